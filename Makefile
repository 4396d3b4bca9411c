# Every target sets itself up on a fresh machine (docs/design.md, "Setting up").
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-engines lint bench soak demo study study16 proto clean

setup:
	@bash deploy/setup_venv.sh
	@bash deploy/install_data.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Slurm, Docker and ssh for real (root: installs Debian packages, starts and stops the daemons).
test-engines: setup
	$(PY) -m pytest -m engines tests/engines $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/gossip_bench.py
	$(PY) benchmarks/train_bench.py
	$(PY) benchmarks/linerate_bench.py
	$(PY) benchmarks/overlap_bench.py
	$(PY) benchmarks/bytes_bench.py

# 16 peers for 30 minutes, one killed every 30 s and restarted from its checkpoint, one 3x slower,
# after a fault-free run of the same length (about 65 minutes in all); the peers are forked from a
# zygote that imported their stack once (swarm.zygote), so a restart costs no import CPU.
soak: setup
	$(PY) benchmarks/soak.py --peers 16 --minutes 30 --kill-every-s 30 --slow-peer 3 --deadline-s 10 --baseline --zygote

demo: setup
	$(VENV)/bin/dssl demo

# The robustness study: 36 swarm runs, resumable (run it again to finish an interrupted
# sweep); then the report, plots and claims.csv (a failed run is reported there, not hidden).
study: setup
	-$(VENV)/bin/dssl sweep examples/study/claims.yaml
	$(VENV)/bin/dssl report runs/sweeps/claims --out docs/results

# Claim 2 decided in the paper's regime at CPU scale: 16 peers, ring against full graph, 11 seeds
# (22 swarm runs of 7-13 min each on 2 cores, resumable); report and claims.csv in docs/results/connectivity16.
study16: setup
	-$(VENV)/bin/dssl sweep examples/study/connectivity16.yaml
	$(VENV)/bin/dssl report runs/sweeps/connectivity16 --out docs/results/connectivity16

proto: setup
	$(PY) -m protocol.compile

clean:
	rm -rf $(VENV) .pytest_cache runs build *.egg-info
