"""analysis: reads what runs and sweeps left on disk and turns it into numbers, tables and reports.

It never starts a process; the launcher calls it after (or while) a swarm runs.

diagnostics.py   swarm diagnostics of a run dir: realised W per round, spectral gap, connectivity,
                 exact consensus distance (final and per snapshot round), probe means
consensus_distance.py  (1/N) Σ‖θ_i − θ̄‖² of flat buffers, and of the evaluated encoder alone
baselines.py     does the swarm pay: each peer vs itself trained alone, θ̄, the centralised model (paired CIs)
collect.py       results of a finished run: per-peer kNN, consensus distance, summary.json, RESULT line
timeline.py      reading a run's timeline.jsonl (the launcher's event log)
progress.py      live swarm progress: one line per interval from the peers' growing metrics files
run_report.py    the report of one run: fault events on the round axis, report.md
run_plots.py     the run report's PNG plots (kNN, consensus, bytes, representation over rounds)
plots.py         plot helpers shared by both reports (Agg backend, event markers, colours, saving)
results.py       a sweep's results.csv: its columns, written from the run manifests, read back typed
claims.py        a grid's claims evaluated over seeds: means, Student-t CIs, paired differences, claims.csv
                 with a decision per claim (confirmed / refuted / equivalence / underpowered)
claim_seeds.py   each claim seed by seed: both sides and the paired effect, claims_per_seed.csv
power.py         power first: Student-t / Welch CIs, seeds needed for a half-width <= δ/2, the decision rule
earlier_results.py  complete runs of an earlier report's results.csv merged into a sweep (report --include)
sweep_dir.py     a loaded sweep directory: results rows, grid, conditions, per-seed and grouping helpers
sweep_plots.py   the sweep report's plots across runs (accuracy vs α, drop from IID, |Ā|, bytes)
round_plots.py   the sweep report's plots over rounds (consensus per condition, fault runs)
mixing_effect.py accuracy drop from IID vs the realised spectral gap / consensus distance, across runs
learning_curve.py  the peers' periodic kNN as a curve per run, and its gain over the last quarter (plateau?)
rank_correlation.py  Spearman's ρ with a Fisher-z 95 % CI (Bonett-Wright standard error)
sweep_report.py  the report of a sweep: report.md with the tables, claims and plots
cli.py           `dssl report RUN_DIR | SWEEP_DIR [--include RESULTS_CSV]`: one command line for both reports
ledger.py        `dssl claims STUDY_DIR...`: the studies' claims.csv stacked, one row of record per claim

analysis depends on peer, gossip and protocol, never on launcher.
"""
