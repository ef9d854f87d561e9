"""The cross-encoder the package ships: present, verified by SHA-256 at load, reranking offline."""

import json
import shutil

import pytest

from rag.errors import ConfigError
from rag.models import bundled
from rag.models.reranker import CrossEncoderReranker, make_reranker


def test_the_bundle_is_one_half_precision_file_with_its_card_and_digest():
    d = bundled.directory("reranker")
    manifest = json.loads((d / "bundle.json").read_text())
    weights = d / "model.safetensors"
    assert manifest["sha256"] == bundled.sha256_of(weights) and manifest["dtype"] == "float16"
    assert weights.stat().st_size <= 50 * 2**20
    card = (d / "MODEL_CARD.md").read_text()
    for needle in ("all-MiniLM-L6-v2", "Apache-2.0", "CC BY 4.0", "CC BY-SA 4.0", "seed 13", manifest["sha256"]):
        assert needle in card, needle
    assert {"config.json", "tokenizer.json"} <= {p.name for p in d.iterdir()}


def test_the_default_reranker_is_the_bundled_one_and_ranks_the_relevant_passage_first():
    reranker, status = make_reranker("bundled", precision="int8")
    assert status == "on (bundled minilm-l6-cross-encoder v1, int8)"
    scores = reranker.score("What does k1 control in BM25?",
                            ["HNSW builds a navigable small-world graph over the vectors.",
                             "In BM25, k1 controls term-frequency saturation: how fast repeated terms stop adding score.",
                             "Lasagna is baked in layers."])
    assert scores.argmax() == 1 and scores[1] - max(scores[0], scores[2]) > 0.2


def test_a_corrupt_bundle_is_one_clear_error(tmp_path, monkeypatch):
    copy = tmp_path / "reranker"
    shutil.copytree(bundled.directory("reranker"), copy)
    with open(copy / "model.safetensors", "r+b") as fh:  # flip one byte in the middle of the weights
        fh.seek(1 << 20)
        byte = fh.read(1)
        fh.seek(1 << 20)
        fh.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(bundled, "ROOT", tmp_path)
    monkeypatch.setattr(bundled, "_verified", set())
    with pytest.raises(ConfigError, match="has SHA-256 .* expected .*corrupt or altered"):
        CrossEncoderReranker("bundled").load()
    (copy / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="missing"):
        CrossEncoderReranker("bundled").load()


def test_a_local_path_is_never_looked_up_on_a_hub(tmp_path):
    model, status = make_reranker("models/no-such-reranker")
    assert model is None and status.startswith("off: no reranker at models/no-such-reranker")
    with pytest.raises(ConfigError, match="no reranker directory at .* hf:ORG/NAME"):
        CrossEncoderReranker(str(tmp_path / "missing")).load()
