"""gossip: moving parameters between peers (transport, mixing, topology, discovery).

hook.py        the contract the trainer sees: publish(params, round) / mix() -> future of MixResult
node.py        GossipNode: serves the latest published snapshot, pulls neighbours concurrently, mixes
node_config.py NodeConfig: every setting of a node, validated
round_mixer.py RoundMixer: one round's weighted average / trimmed mean, mixed while chunks arrive
fused_mix.py   the one-pass mixing kernel (fused_mix.c via ctypes, compiled on first use) or its absence
snapshot.py    what a node serves: Identity, Snapshot (one immutable round + its wire frames), SnapshotStore
service.py     gRPC server handlers (rpc_*)
client.py      gRPC client calls (call_*), each with a deadline
_grpc.py       channel / server options, each commented
mixing.py      pure functions: Metropolis-Hastings / uniform weights, renormalisation, weighted average
topology.py    deterministic graphs from (kind, live peers, round, seed) and their spectral gap
choco.py       CHOCO-Gossip state: public copies advanced by compressed deltas (error feedback), the mix
choco_round.py a node's compressed round: its public copy, its replicas of the neighbours', the CHOCO step
robust.py      snapshot acceptance rules (non-finite, norm / distance jumps) and the trimmed mean
security.py    mutual TLS files, the swarm-secret token (SwarmAuth) and the credentials line
faults.py      transport-fault injection: the control file and the server interceptor reading it
membership.py  the Membership interface (live peers) and the static peer list
discovery.py   hivemind DHT: announce self, list live peers
dht_records.py which DHT entries are valid (PeerRecordValidator); with discovery.py, our only hivemind users
dht_errors.py  DiscoveryError / JoinError and the messages for a DHT that did not start or join
runner.py      GossipRunner: background event loop + the trainer's facade; owns each round's deadline
adaptive_deadline.py  each neighbour's pull deadline: fixed, or following its measured pull times
round_budget.py  the share of a round's deadline its pulls get: a margin that grows after late rounds
state_transfer.py  a late joiner's first model: the averaged newest snapshots of a few live donors
address.py     host:port and multiaddr helpers, the address a wildcard listener advertises

gossip depends on protocol only.
"""
