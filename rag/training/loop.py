"""The optimisation loop both trainers share: seeding, AdamW with warm-up and decay, batches."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm


class _Optimiser:
    """AdamW (weight decay 0.01) with linear warm-up then linear decay to zero, gradient norm
    clipped at 1: the schedule both trainers use."""

    def __init__(self, model, lr: float, warmup: float, total: int) -> None:
        import torch

        self.model = model
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        warm = max(1, int(warmup * total))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))

    def step(self, loss) -> None:
        import torch

        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad()


def _seed_and_quiet(seed: int, threads: int) -> None:
    """Fixed seeds and thread count; transformers' load-time bars and expected warnings off."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # e.g. "newly initialized classifier weights": expected here
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)


def _train_loop(model, n_items: int, batch_size: int, epochs: int, lr: float, warmup: float, seed: int,
                loss_of: Callable[[list[int]], tuple[Any, int]], time_budget_s: float | None, progress: bool,
                desc: str, on_step: Callable[[int, float], None] | None = None
                ) -> tuple[int, int, list[float], bool, float]:
    """Trains ``model`` on mini-batches of item indices, reshuffled each epoch with ``seed``;
    ``loss_of(batch)`` gives the batch's loss and how many pairs it counted. Returns steps, pairs,
    losses, whether the time budget stopped it, and seconds."""
    order = list(range(n_items))
    rng = random.Random(seed)
    losses: list[float] = []
    step = pairs = 0
    total = math.ceil(n_items / batch_size) * epochs
    opt = _Optimiser(model, lr, warmup, total)
    t0 = time.perf_counter()
    with tqdm(total=total, desc=desc, unit="step", disable=not progress) as bar:
        for _ in range(epochs):
            rng.shuffle(order)
            for start in range(0, len(order), batch_size):
                loss, counted = loss_of(order[start:start + batch_size])
                opt.step(loss)
                step += 1
                pairs += counted
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
                if on_step:
                    on_step(step, losses[-1])
                if time_budget_s and time.perf_counter() - t0 > time_budget_s:
                    return step, pairs, losses, True, time.perf_counter() - t0
    return step, pairs, losses, False, time.perf_counter() - t0
