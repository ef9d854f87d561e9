"""Train the project's own cross-encoder reranker (no cross-encoder ships on PyPI).

Recipe (defaults): start from the all-MiniLM-L6-v2 encoder weights with a fresh 1-logit head;
groups of (query, 1 positive, 3 hard + 2 random negatives) where the hard negatives are the
project's own *hybrid* retriever's top hits that are not labelled relevant; a listwise softmax
cross-entropy loss over each group (the positive must outscore its own hard negatives, which is
exactly the reranking decision), plus a fixed zero logit, the "no answer" anchor of SQuAD 2.0
readers: labelled positives must score above it, and for *unanswerable* questions (SQuAD 2.0's,
paired with the paragraph they were written against) every passage must score below it. The
anchor was meant to let the answer gate threshold the score; on SQuAD dev it did not separate
answerable from unanswerable questions (docs/studies/reranker.md), while ranking quality stayed on par.
Max length 256 as at inference; AdamW (lr 1e-4: at 3e-5 the fresh head did not move in one
epoch) with linear warm-up and decay; fixed seed. Training data: labelled pairs from BEIR qrels
and SQuAD-style question/paragraph pairs, only from the 'train' part of the fixed hash split, so
that 'dev' (tuning) and 'heldout' (published figures) queries are never trained on.

A student (``layers`` + ``teacher``): a trained reranker cut to fewer layers and trained again on
the same groups, fitting the full model's logits as well as the labels; it trades some ranking
quality for reranking time (docs/studies/reranker.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rag.errors import ConfigError
from rag.models.hf import load_cross_encoder, model_source
from rag.training.loop import _seed_and_quiet, _train_loop
from rag.training.mining import Group
from rag.training.report import plot_losses


@dataclass
class TrainConfig:
    base_model: str = ""
    max_length: int = 256
    negatives: int = 5
    epochs: int = 1
    batch_groups: int = 4
    lr: float = 1e-4
    warmup: float = 0.1
    seed: int = 13
    threads: int = 2
    max_groups: int | None = None
    time_budget_s: float | None = None
    null_anchor: bool = True
    # A smaller, faster student: keep this many of the base model's encoder layers (evenly spaced,
    # first and last kept) and, with a teacher, also fit the teacher's logits (MSE) next to the
    # listwise loss. The teacher scores every training pair once, before training.
    layers: int | None = None
    teacher: str | None = None
    teacher_max_length: int = 256
    distill_weight: float = 1.0


@dataclass
class TrainReport:
    out: str
    groups: int
    pairs: int
    steps: int
    seconds: float
    pairs_per_second: float
    sources: dict[str, int]
    losses: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    stopped_early: bool = False
    layers_kept: list[int] | None = None  # of the base model's encoder layers (a student)
    teacher_seconds: float = 0.0  # scoring the training pairs with the teacher, before training


def keep_layers(model, n: int) -> list[int]:
    """Cut a BERT-style encoder down to ``n`` of its layers, evenly spaced with the first and the
    last kept (as DistilBERT initialises its student), in place; returns the kept indices. The
    saved config says ``num_hidden_layers = n``, so the model reloads as the smaller one."""
    import torch

    encoder = getattr(getattr(model, "base_model", None), "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise ConfigError("--layers needs a BERT-style encoder (model.base_model.encoder.layer)")
    total = len(layers)
    if not 1 <= n <= total:
        raise ConfigError(f"--layers must be between 1 and {total} for this model, not {n}")
    keep = sorted({int(i) for i in np.linspace(0, total - 1, n).round()})
    encoder.layer = torch.nn.ModuleList([layers[i] for i in keep])
    model.config.num_hidden_layers = len(keep)
    return keep


def teacher_logits(groups: Sequence[Group], teacher: str, max_length: int, threads: int,
                   progress: bool = True) -> list[np.ndarray]:
    """The teacher cross-encoder's raw logits for each group's (positive, *negatives), in order.
    bfloat16 autocast: half the time of float32, within ~0.06 of its logits (docs/studies/reranker.md)."""
    from rag.models.reranker import CrossEncoderReranker

    model = CrossEncoderReranker(teacher, max_length, threads=threads, precision="bfloat16")
    return [model.score_with_logits(g.query, [g.positive, *g.negatives])[1]
            for g in tqdm(groups, desc="teacher logits", unit="q", disable=not progress)]


def train_cross_encoder(groups: Sequence[Group], out: Path, cfg: TrainConfig, progress: bool = True,
                        on_step: Callable[[int, float], None] | None = None) -> TrainReport:
    """Fine-tune and save a sentence-transformers ``CrossEncoder`` to ``out``."""
    import torch

    _seed_and_quiet(cfg.seed, cfg.threads)
    groups = list(groups)
    t_start = time.perf_counter()
    targets = (teacher_logits(groups, cfg.teacher, cfg.teacher_max_length, cfg.threads, progress)
               if cfg.teacher else None)
    t_teacher = time.perf_counter()
    ce = load_cross_encoder(model_source(cfg.base_model, "base model"), cfg.max_length, cfg.threads, num_labels=1)
    model, tok = ce.model, ce.tokenizer
    kept = keep_layers(model, cfg.layers) if cfg.layers else None
    model.train()
    def loss_of(batch_ix: list[int]):
        batch = [groups[i] for i in batch_ix]
        queries = [g.query for g in batch for _ in range(1 + len(g.negatives))]
        passages = [p for g in batch for p in (g.positive, *g.negatives)]
        enc = tok(queries, passages, padding=True, truncation="only_second", max_length=cfg.max_length,
                  return_tensors="pt")
        logits = model(**enc).logits.view(len(batch), -1)
        distill = (torch.nn.functional.mse_loss(
            logits, torch.from_numpy(np.stack([targets[i] for i in batch_ix])).to(logits.dtype))
            if targets is not None else None)
        # Listwise: the positive (column 0) against its own hard negatives and, with the
        # anchor, against a constant 0 (the target column for unanswerable questions).
        target = torch.zeros(len(batch), dtype=torch.long)
        if cfg.null_anchor:
            logits = torch.cat([logits, torch.zeros(len(batch), 1)], dim=1)
            target = torch.tensor([0 if g.answerable else logits.shape[1] - 1 for g in batch])
        loss = torch.nn.functional.cross_entropy(logits, target)
        if distill is not None:
            loss = loss + cfg.distill_weight * distill
        return loss, len(passages)

    step, pairs, losses, stopped, seconds = _train_loop(
        model, len(groups), cfg.batch_groups, cfg.epochs, cfg.lr, cfg.warmup, cfg.seed, loss_of, cfg.time_budget_s,
        progress, "training", on_step)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    ce.save(str(out))
    sources: dict[str, int] = {}
    for g in groups:
        key = g.source if g.answerable else f"{g.source} (unanswerable)"
        sources[key] = sources.get(key, 0) + 1
    report = TrainReport(str(out), len(groups), pairs, step, round(seconds, 1), round(pairs / seconds, 2),
                         sources, [round(x, 4) for x in losses], asdict(cfg), stopped, kept,
                         round(t_teacher - t_start, 1))
    (out / "training_report.json").write_text(json.dumps(asdict(report), indent=2))
    plot_losses(report.losses, out / "loss.png")
    return report
