# The two commands of the README (and setup-mikasa, docs/mikasa.md). Both set everything up first (scripts/setup.sh is idempotent).
export HF_HUB_OFFLINE := 1
export OMP_NUM_THREADS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-mikasa demo test test-all bench

setup:
	bash scripts/setup.sh

# MIKASA-Robo (docs/mikasa.md): Mesa 25's Vulkan CPU renderer, ManiSkill 3 and the MIKASA VLA tasks.
setup-mikasa: setup
	bash scripts/setup_mikasa.sh

demo: setup
	.venv/bin/memlens demo

test: setup
	.venv/bin/python -m pytest -q

test-all: setup
	.venv/bin/python -m pytest -q -m ''

bench: setup
	.venv/bin/python bench/bench_policy.py
