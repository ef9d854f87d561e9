import json
import random

import pytest

from eval.retrieval import doc_run, parse_modes, percentile
from rag.datasets import load_beir, load_korquad, part_of, split_key
from rag.types import Chunk, Hit
from tests.test_cli import rag


def hit(doc, score=1.0):
    return Hit(chunk=Chunk(chunk_id=f"{doc}#0", doc_id=doc, text=""), score=score)


def test_doc_run_max_pools_chunks_in_rank_order():
    run = doc_run([hit("a"), hit("b"), hit("a"), hit("c")])
    assert sorted(run, key=lambda d: -run[d]) == ["a", "b", "c"]


def test_percentile_and_mode_parsing():
    assert percentile([5, 1, 3], 0.5) == 3 and percentile([], 0.9) == 0.0
    specs = parse_modes("bm25,hybrid-rrf,hybrid@fusion_alpha=0.3;fusion_norm=zscore,hybrid+rerank")
    assert [s.mode for s in specs] == ["bm25", "hybrid", "hybrid", "hybrid"]
    assert dict(specs[1].overrides) == {"fusion": "rrf"}
    assert dict(specs[2].overrides) == {"fusion_alpha": "0.3", "fusion_norm": "zscore"}
    assert specs[3].rerank
    with pytest.raises(ValueError):
        parse_modes("colbert")


def test_fixed_split_is_stable_and_proportional():
    parts = [part_of(f"q{i}") for i in range(5000)]
    assert parts[:5] == [part_of(f"q{i}") for i in range(5)]
    share = {p: parts.count(p) / len(parts) for p in ("heldout", "dev", "train")}
    assert 0.37 < share["heldout"] < 0.43 and 0.08 < share["dev"] < 0.12
    assert split_key("squad2_dev", "q1", {"squad2dev-03-011": 1}) == "article:squad2dev-03"
    assert split_key("scifact", "q1", {"d": 1}) == "q1"


@pytest.fixture
def beir_dir(tmp_path):
    rng = random.Random(3)
    topics = ["aspirin heart attack", "vitamin d bone", "insulin diabetes", "statin cholesterol",
              "malaria mosquito", "measles vaccine", "smoking lung cancer", "sleep memory"]
    with open(tmp_path / "corpus.jsonl", "w") as fh:
        for i, t in enumerate(topics):
            fh.write(json.dumps({"_id": f"d{i}", "title": t.title(), "text": f"A study of {t}. " * 3}) + "\n")
            for j in range(3):
                filler = " ".join(rng.choice(["cells", "patients", "trial", "dose", "effect"]) for _ in range(12))
                fh.write(json.dumps({"_id": f"d{i}-{j}", "title": "Other", "text": filler}) + "\n")
    with open(tmp_path / "queries.jsonl", "w") as fh:
        for i, t in enumerate(topics):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"does {t.split()[0]} affect {t.split()[-1]}?"}) + "\n")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(topics))))
    return tmp_path


def test_rag_eval_retrieval_writes_json_markdown_and_png(beir_dir, tmp_path):
    out = tmp_path / "res" / "r.json"
    r = rag("eval", "retrieval", "--dataset", beir_dir, "--split", "test", "--index", tmp_path / "ix",
            "--out", out, "--modes", "bm25,dense,hybrid,hybrid-rrf", "-q", env={"RAG_EMBEDDER": "minilm"})
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["queries"] == 8 and [m["mode"] for m in res["modes"]] == ["bm25", "dense", "hybrid", "hybrid-rrf"]
    for m in res["modes"]:
        assert set(m["metrics"]) >= {"nDCG@10", "Recall@10", "Recall@100", "MRR@10", "MAP@100"}
        assert 0.0 <= m["metrics"]["nDCG@10"] <= 1.0 and m["latency_ms"]["total"]["p95"] > 0
        assert len(m["per_query"]) == 8
    assert res["modes"][0]["metrics"]["nDCG@10"] > 0.9  # the topics are lexically obvious
    assert out.with_suffix(".md").read_text().count("| hybrid") == 2
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # a +rerank mode without a trained reranker is a clear usage error
    r = rag("eval", "retrieval", "--dataset", beir_dir, "--split", "test", "--index", tmp_path / "ix",
            "--out", out, "--modes", "hybrid+rerank", "-q", env={"RAG_RERANKER": str(tmp_path / "none")})
    assert r.returncode != 0 and "reranker" in r.stderr


def test_korquad_view_is_built_in_memory(korquad_file):
    data = load_korquad(korquad_file)
    assert len(data.queries) == 5774 and len(data.documents) >= 960
    assert all(len(rel) == 1 for rel in data.qrels.values())
    assert data.corpus_path is None
    sample = data.select("heldout", limit=100, seed=13)
    assert len(sample.queries) == 100 and sample.queries == data.select("heldout", limit=100, seed=13).queries


def test_beir_loader(shared_data):
    data = load_beir(shared_data / "scifact", "train")
    assert len(data.qrels) == 809 and sum(len(v) for v in data.qrels.values()) == 919


def test_a_mode_overriding_rerank_precision_gets_its_own_reranker():
    from eval.retrieval import reranker_for
    from rag.config import Settings
    from rag.models.reranker import CrossEncoderReranker

    fp32 = CrossEncoderReranker("some/model", max_length=256)  # constructors are cheap: nothing loads
    s = Settings(_env_file=None, rerank_max_length=256, rerank_precision="float32")
    assert reranker_for(fp32, s) is fp32
    int8 = reranker_for(fp32, s.model_copy(update={"rerank_precision": "int8"}))
    assert int8 is not fp32 and int8.precision == "int8" and int8.name == "some/model"
    assert reranker_for(fp32, s.model_copy(update={"rerank_precision": "int8"})) is int8  # built once
    assert reranker_for(int8, s) is fp32  # and back
    bf16 = reranker_for(fp32, s.model_copy(update={"rerank_precision": "bfloat16"}))
    assert bf16.precision == "bfloat16" and bf16 is not int8
    short = reranker_for(fp32, s.model_copy(update={"rerank_max_length": 128}))
    assert short.max_length == 128 and short.precision == "float32"
    other = reranker_for(fp32, s, model="models/reranker-l3")  # @reranker=DIR: another model side by side
    assert other.name == "models/reranker-l3" and other.max_length == 256
    assert reranker_for(other, s, model="some/model") is fp32  # and back to the loaded one
