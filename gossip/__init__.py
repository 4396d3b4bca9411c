"""gossip: moving parameters between peers (transport, mixing, topology, discovery).

hook.py        the contract the trainer sees: publish(params, round) / mix() -> future of MixResult
node.py        GossipNode: serves the latest published snapshot, pulls neighbours concurrently, mixes
service.py     gRPC server handlers (rpc_*)
client.py      gRPC client calls (call_*), each with a deadline
_grpc.py       channel / server options, each commented
mixing.py      pure functions: Metropolis-Hastings / uniform weights, renormalisation, weighted average
topology.py    deterministic graphs from (kind, live peers, round, seed) and their spectral gap
discovery.py   hivemind DHT: announce self, list live peers (the only module importing hivemind)
runner.py      background event loop + the synchronous facade for the trainer

gossip depends on protocol only.
"""
