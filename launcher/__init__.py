"""launcher: starts a swarm's peers as processes (one host or many) and owns their lifetime.

cli.py            the `dssl` console script: one line per sub-command, dispatched to its owner
spec.py           swarm spec YAML: swarm settings, base peer config, per-peer knobs (validated up front)
swarm.py          `dssl swarm`: run_swarm, the one launch path for local, netns and ssh hosts:
                  plan -> run directory -> start peers -> supervise (+ faults) -> collect
demo.py           `dssl demo`: the 8-peer Fashion-MNIST swarm of `make demo`, then θ̄ and its baselines
signal_watch.py   whether Ctrl-C / SIGTERM arrived while a swarm ran (exit 130 after a clean stop)
processes.py      SwarmProcesses: a swarm's peer processes on any transport: process groups,
                  readiness (ready.json or the ready line), signals, graceful stop, supervision
zygote.py         a process that imports the peer's stack once and forks local peers on request
zygote_client.py  the launcher's side of the zygote: start it, fork peers (Popen-like handles), exits
baselines.py      the baselines of a run: each peer trained alone, one centralised model (`dssl baselines`)
follow_ups.py     after a complete run, when asked: its consensus model θ̄ and its baselines (sweeps)
progress_printer.py  the live swarm progress line while supervising (every --progress-s seconds)
hosts.py          multi-host inventory: ssh / netns / local transports, placement of peers on hosts
run_setup.py      creating a run directory: resolved configs, manifest, timeline of events
fault_schedule.py the seeded, replayable fault schedule: format, validation, churn generation
fault_runner.py   applies a fault schedule to a live swarm (signals, duty cycles, transport faults)
fault_control.py  the peers' transport-fault control files, written atomically (here or over ssh)
certs.py          swarm CA and per-peer TLS certificates for a run; `dssl certs` for a peer joining later
grid.py           sweep grid files: validated and expanded into runs (method x split x topology x seeds ...)
sweep.py          `dssl sweep`: runs a grid one run after another, resumable; results.csv + run manifests

launcher is the top layer: it may import analysis, peer, gossip and protocol; nothing imports it.
"""
