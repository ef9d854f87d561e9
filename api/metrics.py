"""Prometheus metrics on a registry of the app's own (several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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

    def observe_stages(self, timings_ms: dict[str, float], stages: tuple[str, ...] | None = None) -> None:
        for stage, ms in timings_ms.items():
            if stage != "total" and (stages is None or stage in stages) and ms:
                self.stage.labels(stage).observe(ms / 1000)

    def observe_answer(self, answer: Answer) -> None:
        self.observe_stages(answer.timings_ms, ("retrieve", "rerank", "generate"))
        if answer.refused:
            self.refusals.labels("gate" if answer.timings_ms.get("generate", 0) == 0 else "model").inc()
