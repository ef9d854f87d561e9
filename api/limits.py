"""Abuse controls: per-key request rates and a bounded queue in front of the LLM.

Both answer before any work is done, with a status and a ``Retry-After`` a client can act on:
429 for a key over its rate, 503 when every generation slot is busy and the queue is full.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time

from rag.errors import OverloadedError, RateLimitedError

_MAX_BUCKETS = 10_000


class RateLimiter:
    """A token bucket per caller: ``burst`` requests at once, refilled at ``per_minute`` / 60 per
    second. Callers are kept by a hash of their key (no key is held in memory in the clear)."""

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.burst = float(burst or per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def check(self, caller: str) -> None:
        """Take one token for ``caller`` or raise :class:`RateLimitedError` saying when one is free."""
        if not self.enabled:
            return
        key = hashlib.sha256(caller.encode()).hexdigest()[:32]
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise RateLimitedError(f"rate limit of {self.per_minute} requests per minute reached; "
                                       f"retry in {wait} s", retry_after=wait)
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > _MAX_BUCKETS:
                self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop the callers whose bucket has refilled: they are indistinguishable from new ones."""
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


class Slot:
    """A held generation slot; :meth:`release` may be called more than once (stream paths end in
    several places)."""

    def __init__(self, slots: GenerationSlots) -> None:
        self._slots, self._held = slots, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release()


class GenerationSlots:
    """At most ``concurrent`` answers generate at once; at most ``queued`` more wait, each for at most
    ``wait_s``. Anything past that gets :class:`OverloadedError` (503) at once, so that a burst of
    clients cannot pile up work that outlives them."""

    def __init__(self, concurrent: int, queued: int, wait_s: float) -> None:
        self.concurrent, self.queued, self.wait_s = concurrent, queued, wait_s
        self.active = 0
        self.waiting = 0
        self._sem = asyncio.Semaphore(concurrent)

    async def acquire(self) -> Slot:
        if self.active >= self.concurrent and self.waiting >= self.queued:
            raise OverloadedError(f"all {self.concurrent} generation slot(s) busy and {self.waiting} answer(s) "
                                  "queued; retry later", retry_after=self._retry_after())
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), self.wait_s)
        except TimeoutError:
            raise OverloadedError(f"no generation slot free within {self.wait_s:g} s; retry later",
                                  retry_after=self._retry_after()) from None
        finally:
            self.waiting -= 1
        self.active += 1
        return Slot(self)

    def _release(self) -> None:
        self.active -= 1
        self._sem.release()

    def _retry_after(self) -> int:
        return max(1, min(60, 5 * (self.waiting + 1)))
