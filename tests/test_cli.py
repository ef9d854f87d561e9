"""The `rag` command through its real entry point (subprocess): output, JSON and exit codes."""

import json
import os
import re
import subprocess
import sys

from tests.conftest import ROOT

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def rag(*args, env=None, cwd=ROOT):
    """The CLI as a user runs it in an activated venv: no HF_* offline variables set (nothing the
    project ships may depend on them)."""
    e = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS}
    e.update(env or {})
    e["PYTHONPATH"] = str(ROOT)  # for a cwd outside the checkout
    return subprocess.run([sys.executable, "-m", "rag.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=e, timeout=300)


def test_ingest_waits_for_another_writer_or_fails_at_once_with_wait_0(corpus_dir, tmp_path):
    import threading

    from rag.index.lock import IndexLock

    index = tmp_path / "ix"
    held = IndexLock(index).__enter__()  # a writer (the service) holds the index
    try:
        r = rag("ingest", corpus_dir, "--index", index, "--wait", "0", "-q")
        assert r.returncode != 0 and "being written by pid" in r.stderr
        threading.Timer(3.0, held.__exit__, (None, None, None)).start()
        r = rag("ingest", corpus_dir, "--index", index, "--wait", "120")
        assert r.returncode == 0, r.stderr
        assert "another writer holds it" in r.stderr and "documents added" in r.stdout
    finally:
        held.__exit__(None, None, None)


def test_ingest_info_and_exit_codes(corpus_dir, tmp_path):
    index = tmp_path / "ix"
    (corpus_dir / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    r = rag("ingest", corpus_dir, "--index", index, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["documents"]["added"] == 8 and report["committed"]
    assert report["skipped"][0]["source"].endswith("broken.pdf")

    r = rag("ingest", corpus_dir, "--index", index, "--strict", "-q")
    assert r.returncode == 3  # skipped inputs with --strict
    assert "unchanged" in r.stdout and "broken.pdf" in r.stdout

    r = rag("info", "--index", index, env={"RAG_RERANKER": str(tmp_path / "no-model")})
    # RAG_EMBEDDER=auto: 2 of the 8 documents are Korean, so the multilingual embedder was chosen
    assert r.returncode == 0 and "e5-small" in r.stdout and "documents / chunks" in r.stdout
    assert re.search(r"reranker\s+│\s+off: no reranker at", r.stdout)  # a missing model: said, not hidden
    info = json.loads(rag("info", "--index", index, "--json", env={"RAG_RERANKER": str(tmp_path / "no-model")}).stdout)
    assert info["reranker"].startswith("off: no reranker at")
    assert info["counts"]["documents"] == 8 and info["versions_on_disk"] == ["v000001"]
    assert info["reranker"].startswith("off")

    r = rag("ingest", "--index", index, "--delete", "sci-1", "-q")
    assert r.returncode == 0 and json.loads(rag("info", "-i", index, "--json").stdout)["counts"]["documents"] == 7


def test_search_prints_stage_scores_and_json(corpus_dir, tmp_path):
    index = tmp_path / "ix"
    assert rag("ingest", corpus_dir, "--index", index, "-q", env={"RAG_EMBEDDER": "minilm"}).returncode == 0
    r = rag("search", "What does k1 control?", "--index", index, "-k", "3")
    assert r.returncode == 0 and "bm25.md" in r.stdout and "timings (ms)" in r.stdout
    r = rag("search", "BM25 k1", "--index", index, "-k", "2", "--mode", "bm25", "--json")
    res = json.loads(r.stdout)
    assert res["mode"] == "bm25" and len(res["hits"]) == 2 and res["hits"][0]["doc_id"] == "bm25.md"
    assert res["hits"][0]["scores"]["dense"] is None and res["hits"][0]["ranks"]["bm25"] == 1
    r = rag("search", "vitamin", "--index", index, "--json", "-f", "topic=nutrition")
    assert [h["doc_id"] for h in json.loads(r.stdout)["hits"]] == ["sci-2"]
    r = rag("search", "x", "--index", index, "-f", "colour=red")
    assert r.returncode == 2 and "unknown metadata filter" in r.stderr
    r = rag("search", "x", "--index", index, "--rerank", env={"RAG_RERANKER": str(tmp_path / "none")})
    assert r.returncode == 1 and "no reranker" in r.stderr


def test_errors_are_one_line_messages(tmp_path, corpus_dir):
    r = rag("info", "--index", tmp_path / "none")
    assert r.returncode == 1 and "no index at" in r.stderr and "Traceback" not in r.stderr
    r = rag("ingest", "--index", tmp_path / "none")
    assert r.returncode == 2 and "PATHS" in r.stderr
    r = rag("ingest", corpus_dir, "--index", tmp_path / "ix", "-q", env={"RAG_EMBEDDER": "/no/such/model"})
    assert r.returncode == 1 and "cannot load embedder" in r.stderr and "Traceback" not in r.stderr
    r = rag("train-reranker", "--out", tmp_path / "student", "--layers", "3", "--teacher", tmp_path / "no-teacher")
    assert r.returncode == 2 and "no teacher model at" in r.stderr and "Traceback" not in r.stderr
    r = rag("info", env={"RAG_LLM_CONTEXT_TOKENS": "1024", "RAG_MAX_TOKENS": "600"})
    assert r.returncode == 1 and "RAG_LLM_CONTEXT_TOKENS=1024 is too small" in r.stderr and "Traceback" not in r.stderr
    r = rag("info", env={"RAG_TOP_K": "many"})
    assert r.returncode == 1 and "RAG_TOP_K" in r.stderr and "Traceback" not in r.stderr
    r = rag("train-reranker", "--out", tmp_path / "student", "--layers", "0")
    assert r.returncode == 2 and "--layers" in r.stderr


def test_train_embedder_end_to_end(tmp_path):
    data = tmp_path / "toy"
    (data / "qrels").mkdir(parents=True)
    topics = ["aspirin lowers the risk of heart attacks", "vitamin d deficiency weakens bones in winter",
              "insulin resistance precedes type two diabetes", "statins reduce blood cholesterol levels",
              "mosquito nets prevent malaria in children", "measles vaccination protects whole communities",
              "smoking causes most lung cancers", "sleep consolidates newly formed memories"]
    docs = [{"_id": f"d{i}", "title": t.capitalize(), "text": f"We report that {t}. " * 2} for i, t in enumerate(topics)]
    (data / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"Is it true that {t}?"}) + "\n"
                                                for i, t in enumerate(topics)))
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"q{i}\td{i}\t1\n" for i in range(len(topics))))
    out = tmp_path / "emb"
    r = rag("train-embedder", "--beir", f"{data}:test", "--indexes", tmp_path / "ix", "--out", out,
            "--batch-size", "4", "--max-length", "64", "--title-queries", "5", "-q")
    assert r.returncode == 0, r.stderr
    assert "trained on" in r.stdout and f"RAG_EMBEDDER={out}" in r.stdout.replace("\n", "")
    report = json.loads((out / "training_report.json").read_text())
    assert report["sources"]["toy titles"] == 5 and report["groups"] > 5  # + the train-part queries
    assert json.loads((out / "rag_embedder.json").read_text())["languages"] == "en"
    assert (tmp_path / "ix" / "eval-toy-minilm").is_dir()  # mining index where asked, not in ./indexes


def test_search_reranks_with_the_bundled_model_offline(corpus_dir, tmp_path):
    """The default pipeline on a fresh install: the shipped cross-encoder, no hub, no HF_* variables."""
    index = tmp_path / "ix"
    assert rag("ingest", corpus_dir, "--index", index, "-q", env={"RAG_EMBEDDER": "minilm"}).returncode == 0
    info = json.loads(rag("info", "--index", index, "--json").stdout)
    assert info["reranker"].startswith("on (bundled minilm-l6-cross-encoder v1, int8)")
    r = rag("search", "What does k1 control in BM25?", "--index", index, "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["reranked"] and res["hits"][0]["doc_id"] == "bm25.md" and res["hits"][0]["ranks"]["rerank"] == 1
    assert "huggingface.co" not in r.stderr
    r = rag("search", "x", "--index", index, env={"RAG_RERANKER": "models/no-such-reranker"})
    assert r.returncode == 0 and "no rerank" in r.stdout  # a missing local path is never a hub id


def test_config_lists_settings_without_secrets():
    r = rag("config", "--json", env={"RAG_API_KEYS": "s3cret", "RAG_TOP_K": "7"})
    values = json.loads(r.stdout)
    assert r.returncode == 0 and values["top_k"] == 7 and values["api_keys"] == "(set)" and "s3cret" not in r.stdout
    assert rag("config", "--markdown").stdout.startswith("# Configuration")


def test_ask_with_history_and_chat_in_the_terminal(fixture_index, tmp_path):
    env = {"RAG_LLM_MODEL": "smollm2", "RAG_LLM_CONTEXT_TOKENS": "2048", "RAG_MAX_TOKENS": "24", "RAG_RERANKER": "none"}
    history = tmp_path / "history.json"
    history.write_text(json.dumps([{"role": "user", "content": "What is reciprocal rank fusion?"},
                                   {"role": "assistant", "content": "It merges ranked lists [1]."}]))
    r = rag("ask", "What value of k does it use?", "--index", fixture_index, "--history", history, "--json", env=env)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["rewritten"] is True and body["query"] != "What value of k does it use?"
    assert body["timings_ms"]["rewrite"] > 0
    history.write_text('[{"role": "system", "content": "x"}]')
    r = rag("ask", "x", "--index", fixture_index, "--history", history, env=env)
    assert r.returncode == 2 and "roles must be" in r.stderr
    chat = subprocess.run([sys.executable, "-m", "rag.cli", "chat", "--index", str(fixture_index)],
                          input="What does the parameter k1 control in BM25?\nWho won the 1998 World Cup?\n\n",
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, **env})
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("you> ") == 3 and "refused" in chat.stdout and "bm25.md" in chat.stdout


def test_collections_and_scoped_keys_from_the_command_line(corpus_dir, tmp_path):
    env = {"RAG_INDEX_DIR": str(tmp_path / "default"), "RAG_EMBEDDER": "minilm", "RAG_RERANKER": "none"}
    r = rag("collections", "create", "team-a", "--set", "top_k=2", env=env)
    assert r.returncode == 0 and "created collection team-a" in r.stdout, r.stderr
    assert rag("collections", "create", "team-a", env=env).returncode == 2  # exists already
    assert rag("collections", "create", "Bad Name", env=env).returncode == 2
    r = rag("ingest", corpus_dir, "--collection", "team-a", "-q", "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["committed"], r.stderr
    assert (tmp_path / "team-a" / "CURRENT").is_file()
    r = rag("search", "reciprocal rank fusion", "--collection", "team-a", "--json", env=env)
    assert r.returncode == 0 and len(json.loads(r.stdout)["hits"]) == 2, r.stderr  # the collection's own top_k
    assert rag("search", "fusion", "--collection", "nope", env=env).returncode == 2
    listed = json.loads(rag("collections", "list", "--json", env=env).stdout)
    assert [(c["name"], c["documents"]) for c in listed] == [("default", 0), ("team-a", 8)]

    made = rag("keys", "create", "--name", "reader", "--read", "team-a", "--json", env=env)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["key"].startswith("rag_") and key["read"] == ["team-a"]
    stored = (tmp_path / "keys.json").read_text()
    assert key["key"] not in stored and oct((tmp_path / "keys.json").stat().st_mode)[-3:] == "600"
    keys = json.loads(rag("keys", "list", "--json", env=env).stdout)
    assert [k["id"] for k in keys] == [key["id"]] and "key" not in keys[0]
    assert rag("keys", "create", "--read", "nope", env=env).returncode == 2
    assert rag("keys", "revoke", key["id"], env=env).returncode == 0
    assert json.loads(rag("keys", "list", "--json", env=env).stdout) == []
    assert rag("collections", "delete", "team-a", "--yes", env=env).returncode == 0
    assert not (tmp_path / "team-a").exists()


def test_a_milvus_index_written_by_one_process_is_searched_by_the_next(corpus_dir, tmp_path):
    """Milvus keeps a collection another process wrote 'released' until it is loaded again."""
    env = {"RAG_BACKEND": "milvus", "RAG_EMBEDDER": "minilm", "RAG_RERANKER": "none"}
    index = tmp_path / "mv"
    r = rag("ingest", corpus_dir, "--index", index, "-q", "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["committed"], r.stderr
    r = rag("search", "What does k1 control in BM25?", "--index", index, "-k", "3", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["hits"][0]["doc_id"] == "bm25.md"
