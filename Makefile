# Every target sets itself up on a fresh machine (DESIGN.md §5).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test bench soak demo study proto clean

setup:
	@bash deploy/setup_venv.sh
	@bash deploy/install_data.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/gossip_bench.py
	$(PY) benchmarks/train_bench.py

soak: setup
	$(PY) benchmarks/soak.py --minutes 30

demo: setup
	$(VENV)/bin/dssl demo

# The robustness study (issue 7): 36 swarm runs, resumable (run it again to finish an interrupted
# sweep); then the report, plots and claims.csv (a failed run is reported there, not hidden).
study: setup
	-$(VENV)/bin/dssl sweep examples/study/claims.yaml
	$(VENV)/bin/dssl report runs/sweeps/claims --out docs/results

proto: setup
	$(PY) -m protocol.compile

clean:
	rm -rf $(VENV) .pytest_cache runs build *.egg-info
