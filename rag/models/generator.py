"""Generators: one protocol, three backends chosen by ``RAG_GENERATOR``.

* ``local``: llama-cpp-python running a GGUF file, offline. Presets name models that ship in PyPI
  packages (``smollm2`` for tests; ``qwen2.5-0.5b`` and ``qwen2.5-1.5b``, assembled from part
  packages and verified by SHA-256, see :mod:`rag.models`); any other value is a .gguf path.
* ``openai``: any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, llama.cpp server,
  Ollama, OpenAI) by base URL, model name and key; streamed.
* ``hf``: Hugging Face Inference Endpoints / TGI through ``huggingface_hub.InferenceClient``.

All stream text deltas; errors become :class:`GeneratorError` or :class:`GeneratorTimeout`
after bounded retries of connection failures (never after the first token).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from rag.errors import GeneratorError, GeneratorTimeout, RagError
from rag.types import GenParams

if TYPE_CHECKING:
    from rag.config import Settings


def _lean_llama_class():
    """llama_cpp.Llama whose saved states leave out the logits of past positions.

    Llama.save_state copies its whole logits buffer (batch × vocabulary floats: 311 MB for Qwen2.5
    at batch 512) into every saved state, which made each answer and each cache hit pay for
    copying it. A restored state is re-evaluated from its last token before sampling
    (``_requires_eval``), so only the last row is kept; load_state broadcasts it."""
    import ctypes

    import llama_cpp
    from llama_cpp import Llama, LlamaState

    class LeanLlama(Llama):
        def save_state(self) -> LlamaState:
            size = llama_cpp.llama_state_get_size(self._ctx.ctx)
            buf = (ctypes.c_uint8 * int(size))()
            n_bytes = llama_cpp.llama_state_get_data(self._ctx.ctx, buf, size)
            if int(n_bytes) > int(size):
                raise RuntimeError("Failed to copy llama state data")
            return LlamaState(scores=self._scores[-1:].copy(), input_ids=self.input_ids.copy(),
                              n_tokens=self.n_tokens, llama_state=ctypes.string_at(buf, int(n_bytes)),
                              llama_state_size=n_bytes, seed=self._seed)

    return LeanLlama


# llama.cpp's ``general.file_type`` values (enum llama_ftype) for the common quantisations.
GGUF_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
                   11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
                   17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


class LlamaCppGenerator:
    """A GGUF model in-process through llama-cpp-python (one generation at a time)."""

    def __init__(self, model_path: str, name: str | None = None, n_ctx: int = 4096, threads: int = 2,
                 batch: int = 512, flash_attn: bool = False, cache_mb: int = 0) -> None:
        self.model_path = model_path
        self.name = name or model_path
        self.context_tokens = n_ctx
        self._threads = threads
        self._batch = batch
        self._flash_attn = flash_attn
        self._cache_mb = cache_mb
        self._llm = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._llm is not None:
            return
        try:
            Llama = _lean_llama_class()
        except ImportError as exc:
            raise GeneratorError("the local generator needs llama-cpp-python (see README: install)") from exc
        self._llm = Llama(model_path=self.model_path, n_ctx=self.context_tokens, n_threads=self._threads,
                          n_batch=self._batch, n_ubatch=self._batch, flash_attn=self._flash_attn, verbose=False)
        if self._cache_mb:
            from llama_cpp import LlamaRAMCache

            # Saved states keyed by their tokens: a prompt sharing a prefix with any of them (not only
            # with the last prompt) restores it and evaluates only the rest.
            self._llm.set_cache(LlamaRAMCache(capacity_bytes=self._cache_mb << 20))

    def close(self) -> None:
        """Free the model's memory (weights, context, saved states); the next call loads it again."""
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def facts(self) -> dict[str, object]:
        """What the GGUF file says about the model: parameters, quantisation, trained context
        length, licence and names (for choosing a model; absent keys are None)."""
        import os

        import llama_cpp

        self.load()
        meta = self._llm.metadata
        arch = meta.get("general.architecture", "")
        ftype = meta.get("general.file_type")
        return {"parameters": int(llama_cpp.llama_model_n_params(self._llm.model)),
                "file_bytes": os.path.getsize(self.model_path),
                "quantization": GGUF_FILE_TYPES.get(int(ftype), f"type {ftype}") if ftype is not None else None,
                "trained_context": int(meta[f"{arch}.context_length"]) if f"{arch}.context_length" in meta else None,
                "context_used": self.context_tokens,
                "licence": meta.get("general.license"), "general_name": meta.get("general.name"),
                "size_label": meta.get("general.size_label")}

    def cache_bytes(self) -> int:
        """Bytes of saved prompt states held in memory (at most ``RAG_LLM_PROMPT_CACHE_MB``)."""
        cache = getattr(self._llm, "cache", None)
        try:
            return int(cache.cache_size) if cache is not None else 0
        except RuntimeError:  # a state was saved while we summed: the next scrape has the value
            return 0

    def stream(self, messages: Sequence[dict[str, str]], params: GenParams) -> Iterator[str]:
        self.load()
        with self._lock:  # a llama.cpp context serves one sequence at a time
            chunks = self._llm.create_chat_completion(
                messages=list(messages), stream=True, temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_tokens, seed=params.seed, stop=list(params.stop) or None)
            try:
                for chunk in chunks:
                    delta = chunk["choices"][0].get("delta", {}).get("content")
                    if delta:
                        yield delta
            finally:
                chunks.close()  # a client that disconnects stops generation here


class OpenAIGenerator:
    """Streaming client for OpenAI-compatible chat completions."""

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 60.0, retries: int = 2,
                 context_tokens: int = 4096, cache_prompt: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache_prompt = cache_prompt
        self.model = model
        self.name = f"openai:{model}"
        self.context_tokens = context_tokens
        self._key = api_key
        self._timeout = timeout
        self._retries = retries
        self._client = None

    def load(self) -> None:
        import httpx

        if self._client is None:
            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            self._client = httpx.Client(base_url=self.base_url, headers=headers,
                                        timeout=httpx.Timeout(self._timeout, connect=min(10.0, self._timeout)))

    def count_tokens(self, text: str) -> int:
        # No tokenizer for a remote model: a conservative estimate (about 3 characters a token).
        return len(text) // 3 + 1

    def stream(self, messages: Sequence[dict[str, str]], params: GenParams) -> Iterator[str]:
        import httpx

        self.load()
        body = {"model": self.model, "messages": list(messages), "stream": True, "temperature": params.temperature,
                "top_p": params.top_p, "max_tokens": params.max_tokens}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if self.cache_prompt:
            body["cache_prompt"] = True  # llama.cpp server: reuse the KV cache of the common prefix
        for attempt in range(self._retries + 1):
            started = False
            try:
                with self._client.stream("POST", "/v1/chat/completions", json=body) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise GeneratorError(f"LLM backend answered {resp.status_code}: {resp.text[:200]}")
                    for delta in _sse_deltas(resp.iter_lines(), resp.headers.get("content-type", "")):
                        started = True
                        yield delta
                return
            except httpx.TimeoutException as exc:
                if started or attempt == self._retries:
                    raise GeneratorTimeout(f"LLM backend timed out after {self._timeout:g} s") from exc
            except httpx.TransportError as exc:
                if started:
                    raise GeneratorError(f"LLM backend closed the stream mid-answer: {exc}") from exc
                if attempt == self._retries:
                    raise GeneratorError(f"LLM backend unreachable at {self.base_url}: {exc}") from exc
            time.sleep(0.2 * (attempt + 1))


def _sse_deltas(lines: Iterator[str], content_type: str) -> Iterator[str]:
    """The text deltas of an OpenAI chat stream. A stream must end with ``[DONE]`` or a
    ``finish_reason``: one that stops short (a backend that died) or never sent an event (an HTML
    error page, a proxy's reply) is a :class:`GeneratorError`, not an empty answer."""
    events = 0
    finished = False
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            choices = json.loads(data)["choices"]
            choice = choices[0] if choices else {}  # a usage-only chunk has no choices
            delta = (choice.get("delta") or {}).get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise GeneratorError(f"malformed stream from LLM backend: {data[:120]}") from exc
        events += 1
        finished = finished or bool(choice.get("finish_reason"))
        if delta:
            yield delta
    if not events:
        raise GeneratorError(f"LLM backend sent no chat stream (content-type {content_type or 'none'})")
    if not finished:
        raise GeneratorError("LLM backend closed the stream mid-answer (no [DONE])")


class HFGenerator:
    """Hugging Face Inference Endpoints / TGI (chat completion API) via ``InferenceClient``."""

    def __init__(self, base_url: str, model: str = "tgi", token: str = "", timeout: float = 60.0,
                 context_tokens: int = 4096) -> None:
        self.base_url = base_url
        self.model = model
        self.name = f"hf:{model}"
        self.context_tokens = context_tokens
        self._token = token or None
        self._timeout = timeout
        self._client = None

    def load(self) -> None:
        import huggingface_hub.constants as hf_constants
        from huggingface_hub import InferenceClient

        # HF_HUB_OFFLINE keeps model loading off the hub; a configured inference endpoint is an
        # explicit network destination, so this client must still reach it.
        hf_constants.HF_HUB_OFFLINE = False
        if self._client is None:
            self._client = InferenceClient(base_url=self.base_url, api_key=self._token, timeout=self._timeout)

    def count_tokens(self, text: str) -> int:
        return len(text) // 3 + 1

    def stream(self, messages: Sequence[dict[str, str]], params: GenParams) -> Iterator[str]:
        self.load()
        try:
            chunks = self._client.chat_completion(
                messages=list(messages), model=self.model, stream=True, max_tokens=params.max_tokens,
                temperature=params.temperature, top_p=params.top_p, seed=params.seed,
                stop=list(params.stop) or None)
            for chunk in chunks:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    yield delta
        except RagError:
            raise
        except TimeoutError as exc:
            raise GeneratorTimeout(f"LLM backend timed out after {self._timeout:g} s") from exc
        except Exception as exc:  # huggingface_hub raises many types (HTTP, connection, parsing)
            if "timed out" in str(exc).lower():
                raise GeneratorTimeout(f"LLM backend timed out after {self._timeout:g} s") from exc
            raise GeneratorError(f"LLM backend failed: {exc.__class__.__name__}: {str(exc)[:200]}") from exc


def make_generator(settings: Settings):
    """The generator the settings name (not loaded yet)."""
    if settings.generator == "openai":
        return OpenAIGenerator(settings.llm_base_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout,
                               settings.llm_retries, settings.llm_context_tokens, settings.llm_cache_prompt)
    if settings.generator == "hf":
        return HFGenerator(settings.llm_base_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout,
                           settings.llm_context_tokens)
    from rag.models.gguf import resolve_gguf

    return LlamaCppGenerator(str(resolve_gguf(settings.llm_model)), settings.llm_model, settings.llm_context_tokens,
                             settings.llm_threads, settings.llm_batch, settings.llm_flash_attn,
                             settings.llm_prompt_cache_mb)
