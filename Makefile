# Every target creates the virtual environment when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test test-fast lint pytest demo bench bench-accuracy bench-accuracy-conv bench-neurons bench-pipeline bench-gpu interop fuzz clean

# The environment pins exact versions for reproducible runs (pyproject.toml declares the supported
# range); '.[dev]' brings every extra (train, data, plot, nir) and the test and lint tools CI needs.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests $(wildcard benchmarks examples)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest -q --hypothesis-profile=ci --durations=10 $(PYTEST_ARGS)

test: lint pytest

# Everything but the tests marked slow (child processes: signals, torchrun, wheel build, plugin install).
test-fast: $(STAMP)
	$(PY) -m pytest -q --hypothesis-profile=ci --durations=10 -m "not slow" $(PYTEST_ARGS)

# The property tests and the hostile-input suite at hypothesis's "thorough" profile (docs/reliability.md).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q --durations=10 tests/test_spec_fuzz.py tests/test_hostile_*.py

demo: $(STAMP)
	$(PY) -m softspike.demo $(DEMO_ARGS)

# Long training: MNIST accuracy of the zoo's mnist_fc (see docs/benchmarks.md); takes several minutes.
bench-accuracy: $(STAMP)
	$(PY) benchmarks/accuracy_mnist.py

# MNIST accuracy of the zoo's mnist_conv within a 15-minute budget on 2 threads (docs/benchmarks.md); SEED=0 by default.
bench-accuracy-conv: $(STAMP)
	$(PY) benchmarks/accuracy_mnist_conv.py --seed $(or $(SEED),0) $(BENCH_ARGS)

# Every registered neuron (plugins included) trains mnist_fc's network one epoch through `softspike train`.
bench-neurons: $(STAMP)
	$(PY) benchmarks/every_neuron.py $(BENCH_ARGS)

# Speed and memory against the peers (not a test): .benchenv sees .venv's torch, peers go in --no-deps.
bench: $(STAMP)
	VENV=$(VENV) sh benchmarks/setup_env.sh
	.benchenv/bin/python benchmarks/run_all.py $(BENCH_ARGS)
	.benchenv/bin/python -m pytest -q -rs tests/test_nir_norse.py

# NIR against a real peer: Norse's graphs in softspike and softspike's in Norse (same .benchenv as bench).
interop: $(STAMP)
	VENV=$(VENV) sh benchmarks/setup_env.sh
	.benchenv/bin/python -m pytest -q -rs tests/test_nir.py tests/test_nir_norse.py tests/test_nir_snntorch.py

# Pipelined training (2 processes) against one process, images/s and memory per stage (docs/benchmarks.md).
bench-pipeline: $(STAMP)
	$(PY) benchmarks/pipeline.py $(BENCH_ARGS)

# On a CUDA GPU, < 8 min: softspike against its CPU results and the peers there (docs/gpu.md); writes the GPU
# section of docs/benchmarks.md. BENCH_ARGS=--dry-run checks it on the CPU and writes nothing.
bench-gpu: $(STAMP)
	VENV=$(VENV) sh benchmarks/setup_env.sh
	.benchenv/bin/python benchmarks/gpu.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
