# `make demo` and `make test` set up .venv by themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean-venv

$(STAMP): pyproject.toml scripts/install_torch.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	scripts/install_torch.sh $(VENV)
	$(BIN)/pip install -q -e ".[test,export]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m videozoo demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/predict.py

clean-venv:
	rm -rf $(VENV)
