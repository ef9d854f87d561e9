"""Fine-tune the dense retriever's bi-encoder: in-batch InfoNCE plus hybrid-mined hard negatives."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.errors import ConfigError
from rag.models.hf import load_sentence_transformer, model_source
from rag.training.cross_encoder import TrainReport
from rag.training.loop import _seed_and_quiet, _train_loop
from rag.training.mining import Group
from rag.training.report import plot_losses


@dataclass
class EmbedderTrainConfig:
    """Fine-tuning a sentence-transformers bi-encoder (the dense retriever's embedder)."""

    base_model: str = ""
    max_length: int = 256
    hard_negatives: int = 1
    epochs: int = 2
    batch_size: int = 32
    lr: float = 3e-5
    warmup: float = 0.1
    scale: float = 20.0
    seed: int = 13
    threads: int = 2
    time_budget_s: float | None = None
    # Recorded beside the saved model (rag.models.embedder.META_FILE), so the language gate knows it.
    languages: str = "unknown"


def train_bi_encoder(groups: Sequence[Group], out: Path, cfg: EmbedderTrainConfig, progress: bool = True
                     ) -> TrainReport:
    """Fine-tune and save a sentence-transformers bi-encoder to ``out``.

    Loss: multiple-negatives ranking (InfoNCE, as sentence-transformers' MultipleNegativesRankingLoss):
    each query's cosine with its positive, scaled by ``scale``, against every other passage of
    the batch (the other queries' positives and everybody's ``hard_negatives`` mined by the hybrid
    retriever). A passage equal to the query's own positive elsewhere in the batch (SQuAD asks
    several questions of one paragraph) is masked, not treated as a negative. Unanswerable groups
    have no positive and are skipped."""
    import torch

    _seed_and_quiet(cfg.seed, cfg.threads)
    groups = [g for g in groups if g.answerable]
    if not groups:
        raise ConfigError("no training pairs: the sources gave no answerable 'train'-part query")
    try:
        model = load_sentence_transformer(model_source(cfg.base_model, "base model"), cfg.threads)
    except ConfigError as exc:
        raise ConfigError(f"cannot load base model {cfg.base_model!r}: {exc}") from exc
    model.max_seq_length = cfg.max_length
    model.train()
    preprocess = getattr(model, "preprocess", None) or model.tokenize  # tokenize: sentence-transformers < 6

    def encode(texts: list[str]):
        features = preprocess(texts)
        return torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)

    def loss_of(batch_ix: list[int]):
        batch = [groups[i] for i in batch_ix]
        passages = [g.positive for g in batch] + [n for g in batch for n in g.negatives[:cfg.hard_negatives]]
        scores = cfg.scale * encode([g.query for g in batch]) @ encode(passages).T
        same = torch.tensor([[j != i and passages[j] == g.positive for j in range(len(passages))]
                             for i, g in enumerate(batch)])
        scores = scores.masked_fill(same, float("-inf"))
        return torch.nn.functional.cross_entropy(scores, torch.arange(len(batch))), len(batch)

    step, pairs, losses, stopped, seconds = _train_loop(
        model, len(groups), cfg.batch_size, cfg.epochs, cfg.lr, cfg.warmup, cfg.seed, loss_of, cfg.time_budget_s,
        progress, "training embedder")
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    from rag.models.embedder import META_FILE

    (out / META_FILE).write_text(json.dumps({"languages": cfg.languages, "base_model": cfg.base_model,
                                             "trained_by": "rag train-embedder"}, indent=2))
    sources: dict[str, int] = {}
    for g in groups:
        sources[g.source] = sources.get(g.source, 0) + 1
    report = TrainReport(str(out), len(groups), pairs, step, round(seconds, 1), round(pairs / seconds, 2),
                         sources, [round(x, 4) for x in losses], asdict(cfg), stopped)
    (out / "training_report.json").write_text(json.dumps(asdict(report), indent=2))
    plot_losses(report.losses, out / "loss.png", title="bi-encoder training loss", ylabel="in-batch CE loss")
    return report
