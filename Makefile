# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Empty it (`make test TORCH_CONSTRAINTS=`) to keep a torch build you installed yourself.
TORCH_CONSTRAINTS ?= -c constraints.txt
PYTEST_WORKERS ?= 2

.PHONY: install install-dev browser demo test lint clean

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

# The studio's browser tests drive Debian's headless chromium (playwright never downloads one). Installed here
# when missing and apt-get is at hand as root; elsewhere those tests skip and say why.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "note: no chromium (apt-get install chromium chromium-driver); the studio's browser tests will skip"

test: lint browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
