# `make demo`, `make lint` and `make test` set up .venv by themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist processes; each gets an equal share of the cores as torch threads (tests/conftest.py).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15

.PHONY: demo lint test test-all bench clean-venv

$(STAMP): pyproject.toml scripts/install_torch.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	scripts/install_torch.sh $(VENV)
	$(BIN)/pip install -q -e ".[test,dev,serve,timeline,export,openvino,ray]"
	# open_clip's tokenizer is the reference of tests/test_tokenizer.py: its package without its
	# dependencies (they would pull torchvision; the test loads only open_clip/tokenizer.py).
	$(BIN)/pip install -q --no-deps "open_clip_torch>=2.24,<4"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m videozoo demo --out demo-output

# The house rules, configured in pyproject.toml: lint, the import layers, types.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

# What CI runs: everything but the tests marked slow.
test: $(STAMP)
	$(PYTEST) -m "not slow" || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest found no test to run" >&2; exit $$rc; }

# Every test, the slow ones (training from scratch, full-size duplicates) included.
test-all: $(STAMP)
	$(PYTEST)

bench: $(STAMP)
	$(BIN)/python benchmarks/predict.py

clean-venv:
	rm -rf $(VENV)
