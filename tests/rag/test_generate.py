"""Remote generator backends against real servers on 127.0.0.1: llama.cpp's own OpenAI-compatible
server running SmolLM2 (for the `openai` and `hf` clients), and a silent socket for timeouts."""

import socket
import threading

import pytest

from api.errors import status_of
from rag.errors import GeneratorError, GeneratorTimeout
from rag.models.generator import HFGenerator, OpenAIGenerator
from rag.types import GenParams
from tests.conftest import free_port

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]


def test_openai_client_streams_from_a_real_server(llama_server):
    gen = OpenAIGenerator(llama_server, "smollm2", api_key="unused", timeout=60)
    deltas = list(gen.stream(MESSAGES, GenParams(max_tokens=12, seed=1)))
    assert len(deltas) > 1 and "".join(deltas).strip()
    # sampling settings travel to the server: a 1-token cap gives a 1-token answer
    assert len(list(gen.stream(MESSAGES, GenParams(max_tokens=1, temperature=0.7, top_p=0.9)))) == 1


def test_hf_client_against_the_same_server(llama_server):
    gen = HFGenerator(llama_server, "smollm2", timeout=60)
    text = "".join(gen.stream(MESSAGES, GenParams(max_tokens=12)))
    assert text.strip()


def test_unreachable_backend_is_a_502_after_retries():
    gen = OpenAIGenerator(f"http://127.0.0.1:{free_port()}", "m", retries=1, timeout=5)
    with pytest.raises(GeneratorError, match="unreachable") as err:
        list(gen.stream(MESSAGES, GenParams()))
    assert type(err.value) is GeneratorError and status_of(err.value) == 502


def test_silent_backend_times_out_as_504():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns = []
    stop = threading.Event()

    def accept():  # accepts, reads, never answers
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        gen = OpenAIGenerator(f"http://127.0.0.1:{srv.getsockname()[1]}", "m", retries=0, timeout=1.0)
        with pytest.raises(GeneratorTimeout) as err:
            list(gen.stream(MESSAGES, GenParams()))
        assert status_of(err.value) == 504
    finally:
        stop.set()
        t.join()
        for c in conns:
            c.close()
        srv.close()


def test_a_local_model_closed_frees_its_weights_and_loads_again_on_use():
    """`rag eval models` runs one model after another: closing one must free it, and a later call
    must still work (it loads the model again)."""
    from rag.models.generator import LlamaCppGenerator
    from rag.models.gguf import resolve_gguf

    gen = LlamaCppGenerator(str(resolve_gguf("smollm2")), "smollm2", n_ctx=512, threads=2)
    n = gen.count_tokens("Reciprocal rank fusion")
    assert gen._llm is not None
    gen.close()
    assert gen._llm is None
    gen.close()  # twice is harmless
    assert gen.count_tokens("Reciprocal rank fusion") == n
