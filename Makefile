# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Empty it (`make test TORCH_CONSTRAINTS=`) to keep a torch build you installed yourself.
TORCH_CONSTRAINTS ?= -c constraints.txt
PYTEST_WORKERS ?= 2

.PHONY: install install-dev demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_CONSTRAINTS) -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/difflab demo --out outputs/demo

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
