import pytest

from ingest.chunker import Chunker
from ingest.loaders import load_markdown
from rag.types import Document

LONG_PARA = " ".join(f"Sentence number {i} talks about retrieval, ranking and evaluation metrics." for i in range(40))


@pytest.fixture(scope="module")
def chunker_factory(embedder):
    def make(max_tokens=64, overlap=16):
        return Chunker(embedder.count_tokens, max_tokens, embedder.overhead, overlap)
    return make


def test_no_chunk_exceeds_the_embedder_limit(embedder, chunker_factory):
    md = f"# Title\n\nShort intro.\n\n## Long section\n\n{LONG_PARA}\n\n{'x' * 3000}\n\n## Tail\n\nThe end."
    doc = load_markdown(md, "d.md", "d.md", "d")
    for limit in (48, 64, 128):
        chunks = chunker_factory(limit, 16).chunk(doc)
        for c in chunks:
            real = embedder.count_tokens([c.embed_text()])[0] + embedder.overhead
            assert real <= limit, (limit, c.chunk_id, real)
            assert doc.text[c.start:c.end] == c.text and c.text.strip()
            assert c.n_tokens + embedder.overhead <= limit


def test_sections_are_not_merged_and_ids_are_sequential(chunker_factory):
    doc = load_markdown("# T\n\nalpha\n\n## A\n\nbeta\n\n## B\n\ngamma", "d", "d", "d")
    chunks = chunker_factory(128).chunk(doc)
    assert [(c.heading, c.text) for c in chunks] == [("T", "alpha"), ("T > A", "beta"), ("T > B", "gamma")]
    assert [c.chunk_id for c in chunks] == ["d#0", "d#1", "d#2"]


def test_overlap_repeats_whole_trailing_sentences(chunker_factory):
    doc = Document("d", LONG_PARA, title="t")
    chunks = chunker_factory(64, 24).chunk(doc)
    assert len(chunks) > 3
    overlapping = sum(1 for a, b in zip(chunks, chunks[1:]) if b.start < a.end)
    assert overlapping >= len(chunks) - 2
    no_overlap = chunker_factory(64, 0).chunk(doc)
    assert all(b.start >= a.end for a, b in zip(no_overlap, no_overlap[1:]))
    covered = "".join(doc.text[c.start:c.end] for c in no_overlap)
    assert covered.replace(" ", "") == doc.text.replace(" ", "")  # nothing lost


def test_korean_and_language_tag(chunker_factory):
    doc = Document("k", "서울은 대한민국의 수도이다. 형태소 분석기는 조사를 제거한다.", title="한국어")
    (chunk,) = chunker_factory(128).chunk(doc)
    assert chunk.lang == "ko" and chunk.title == "한국어"


def test_rejects_impossible_budget(embedder):
    with pytest.raises(ValueError):
        Chunker(embedder.count_tokens, 10, embedder.overhead, 0)
