# Every target sets itself up on a fresh machine (docs/design.md, "Setting up").
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-engines lint bench soak demo study study16 claims proto clean

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

# The robustness study at 4-8 peers: 36 swarm runs, resumable (run it again to finish an
# interrupted sweep); then its report, plots and claims.csv in docs/results/claims4, and the ledger.
study: setup
	-$(VENV)/bin/dssl sweep examples/study/claims.yaml
	$(VENV)/bin/dssl report runs/sweeps/claims --out docs/results/claims4
	$(MAKE) claims

# The paper's regime at CPU scale: 16 peers, claim 2 (ring against full graph, 11 seeds: 22 swarm
# runs of 7-13 min on 2 cores), claim 3 (MAR against MAE on the ring, 30 seeds: 60 runs), claim 1b (SimSiam
# and MAE on one ViT, IID against feature skew, 28 seeds: 112 runs of 6-16 min), claim 1 (the same
# against Dirichlet 0.1: the Dirichlet arms of 12 seeds, 24 runs, with feature16's IID arms);
# resumable; reports and claims.csv in docs/results/connectivity16, mar16, feature16 and dirichlet16,
# and the ledger.
study16: setup
	-$(VENV)/bin/dssl sweep examples/study/connectivity16.yaml
	$(VENV)/bin/dssl report runs/sweeps/connectivity16 --out docs/results/connectivity16
	-$(VENV)/bin/dssl sweep examples/study/mar16.yaml
	$(VENV)/bin/dssl report runs/sweeps/mar16 --out docs/results/mar16
	-$(VENV)/bin/dssl sweep examples/study/feature16.yaml
	$(VENV)/bin/dssl report runs/sweeps/feature16 --out docs/results/feature16
	-$(VENV)/bin/dssl sweep examples/study/dirichlet16.yaml --only split=dir0.1
	$(VENV)/bin/dssl report runs/sweeps/dirichlet16 --out docs/results/dirichlet16 \
		--include runs/sweeps/feature16/results.csv
	$(MAKE) claims

# One ledger of the paper's claims over the study reports: per claim, the row of record is the
# strongest decision (powered and decisive first); the 16-peer studies are listed first (ties go to
# the first listed), the one-backbone pilot before the 4-8-peer study.
claims: setup
	$(VENV)/bin/dssl claims $(wildcard docs/results/connectivity16 docs/results/mar16 docs/results/feature16 \
		docs/results/dirichlet16) \
		docs/results/backbone16_pilot docs/results/claims4 \
		--out docs/results/claims.csv

proto: setup
	$(PY) -m protocol.compile

clean:
	rm -rf $(VENV) .pytest_cache runs build *.egg-info
