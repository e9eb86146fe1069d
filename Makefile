# The two commands of the README. Both set everything up first (scripts/setup.sh is idempotent).
export HF_HUB_OFFLINE := 1
export OMP_NUM_THREADS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-all bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/memlens demo

test: setup
	.venv/bin/python -m pytest -q

test-all: setup
	.venv/bin/python -m pytest -q -m ''

bench: setup
	.venv/bin/python bench/bench_policy.py
