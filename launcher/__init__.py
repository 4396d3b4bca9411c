"""launcher: starts peers as processes (one host or many) and owns their lifetime.

cli.py      the `dssl` console script: dispatches to peer-side commands and launcher commands
spec.py     swarm spec YAML: swarm settings, base peer config, per-peer knobs (validated up front)
swarm.py    `dssl swarm` / `dssl demo`: plan -> run directory -> start peers -> supervise -> collect
local.py    peer processes on this host: process groups, readiness (ready.json), signal forwarding
hosts.py    multi-host inventory: ssh / netns / local transports, placement of peers on hosts
rundir.py   the run directory: resolved configs, manifest, timeline of events
collect.py  results of a finished run: per-peer kNN, consensus distance, the RESULT line
faults.py   seeded, replayable fault schedule applied by the launcher (signals + transport faults)
certs.py    swarm CA and per-peer TLS certificates for a run; `dssl certs` for a peer joining later
report.py   `dssl report`: Markdown + PNG plots of a run
grid.py     sweep grid files: validated and expanded into runs (method x split x topology x seeds ...)
sweep.py    `dssl sweep`: runs a grid one run after another, resumable; results.csv + run manifests
claims.py   a grid's claims evaluated over seeds: means, Student-t CIs, paired differences, claims.csv
study_report.py  `dssl report SWEEP_DIR`: the sweep's Markdown report with plots and claims

launcher imports only peer's config and CLI modules, never gossip internals.
"""
