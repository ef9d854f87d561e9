"""Prometheus metrics on a registry of the app's own (several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from rag.answering.grounding import REFUSAL_REASON as GROUNDING_REFUSAL
from rag.types import Answer


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rag_requests_total", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("rag_request_seconds", "HTTP request latency", ["endpoint"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.stage = Histogram("rag_stage_seconds", "Latency per pipeline stage", ["stage"], registry=self.registry,
                               buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.refusals = Counter("rag_refusals_total", "Refused questions", ["reason"], registry=self.registry)
        self.prompt_tokens = Histogram("rag_prompt_tokens", "Prompt tokens the LLM evaluated per answer",
                                       registry=self.registry, buckets=(128, 256, 512, 1024, 1536, 2048, 3072, 4096, 8192))
        self.ttft = Histogram("rag_ttft_seconds", "Time to the first answer token", registry=self.registry,
                              buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 12, 20, 30, 60, 120))
        self.prefill_rate = Histogram("rag_prefill_tokens_per_second", "LLM prompt evaluation speed",
                                      registry=self.registry, buckets=(25, 50, 75, 100, 150, 200, 300, 500, 1000, 3000))
        self.decode_rate = Histogram("rag_decode_tokens_per_second", "LLM generation speed after the first token",
                                     registry=self.registry, buckets=(2, 5, 10, 15, 20, 30, 50, 100, 200))

    def watch(self, gauges: dict[str, tuple[str, Callable[[], float]]]) -> None:
        """Gauges read when /metrics is scraped: ``{name: (help, read)}``."""
        for name, (text, read) in gauges.items():
            Gauge(name, text, registry=self.registry).set_function(read)

    def observe_stages(self, timings_ms: dict[str, float], stages: tuple[str, ...] | None = None) -> None:
        for stage, ms in timings_ms.items():
            if stage != "total" and (stages is None or stage in stages) and ms:
                self.stage.labels(stage).observe(ms / 1000)

    def observe_answer(self, answer: Answer) -> None:
        self.observe_stages(answer.timings_ms, ("rewrite", "retrieve", "rerank", "generate"))
        usage = answer.usage()
        if answer.prompt_tokens:
            self.prompt_tokens.observe(answer.prompt_tokens)
            self.ttft.observe(answer.timings_ms.get("ttft", 0.0) / 1000)
        if usage["prefill_tokens_per_s"]:
            self.prefill_rate.observe(usage["prefill_tokens_per_s"])
        if usage["decode_tokens_per_s"]:
            self.decode_rate.observe(usage["decode_tokens_per_s"])
        if answer.refused:
            self.refusals.labels(refusal_label(answer)).inc()


def refusal_label(answer: Answer) -> str:
    """Who refused: the retrieval gate (no LLM call), the grounding check, or the model itself."""
    if not answer.prompt_tokens:  # the LLM never saw a prompt
        return "gate"
    return "grounding" if answer.refusal_reason == GROUNDING_REFUSAL else "model"
