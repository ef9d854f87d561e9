"""Train the project's own cross-encoder reranker (no cross-encoder ships on PyPI).

Recipe (defaults): start from the all-MiniLM-L6-v2 encoder weights with a fresh 1-logit head;
groups of (query, 1 positive, 3 hard + 2 random negatives) where the hard negatives are the
project's own *hybrid* retriever's top hits that are not labelled relevant; a listwise softmax
cross-entropy loss over each group (the positive must outscore its own hard negatives, which is
exactly the reranking decision), plus a fixed zero logit, the "no answer" anchor of SQuAD 2.0
readers: labelled positives must score above it, and for *unanswerable* questions (SQuAD 2.0's,
paired with the paragraph they were written against) every passage must score below it. The
anchor was meant to let the answer gate threshold the score; on SQuAD dev it did not separate
answerable from unanswerable questions (README), while ranking quality stayed on par.
Max length 256 as at inference; AdamW (lr 1e-4: at 3e-5 the fresh head did not move in one
epoch) with linear warm-up and decay; fixed seed. Training data: labelled pairs from BEIR qrels
and SQuAD-style question/paragraph pairs, only from the 'train' part of the fixed hash split, so
that 'dev' (tuning) and 'heldout' (published figures) queries are never trained on.

A student (``layers`` + ``teacher``): a trained reranker cut to fewer layers and trained again on
the same groups, fitting the full model's logits as well as the labels; it trades some ranking
quality for reranking time (README, "A faster reranker").
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rag.types import Chunk


@dataclass(frozen=True)
class Group:
    query: str
    positive: str
    negatives: tuple[str, ...]
    source: str = ""
    # False: a question the passages do not answer; ``positive`` then holds the paragraph it was
    # written against (the hardest negative) and the target is the zero "no answer" anchor.
    answerable: bool = True


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


def mine_groups(retriever, labelled: Sequence[tuple[str, set[str], str]], n_negatives: int, depth: int = 30,
                source: str = "", progress: bool = True, n_random: int = 0, seed: int = 13,
                answerable: bool = True, text_of: Callable[[Chunk], str] = Chunk.embed_text) -> list[Group]:
    """For each (query, relevant doc ids, positive passage): hard negatives = the retriever's top
    ``depth`` hybrid hits from other documents, best first (chunks, as the reranker will see them),
    plus ``n_random`` random chunks (easy negatives that teach plain relevance first).
    ``text_of`` renders a negative chunk (default: as it is embedded and reranked)."""
    rng = random.Random(seed)
    all_ids = retriever.index.dense.ids().tolist() if n_random else []
    groups = []
    for query, relevant, positive in tqdm(labelled, desc=f"mining {source}", unit="q", disable=not progress):
        res = retriever.search(query, k=depth, mode="hybrid", rerank=False)
        negs, seen = [], set()
        for h in res.hits:
            if h.chunk.doc_id in relevant or h.chunk.doc_id in seen:
                continue
            seen.add(h.chunk.doc_id)
            negs.append(text_of(h.chunk))
            if len(negs) == n_negatives:
                break
        if len(negs) < n_negatives:
            continue
        for cid in rng.sample(all_ids, min(len(all_ids), 4 * n_random + 4)):
            if len(negs) == n_negatives + n_random:
                break
            chunk = retriever.index.chunks_by_ids([cid])[cid]
            if chunk.doc_id not in relevant and chunk.doc_id not in seen:
                seen.add(chunk.doc_id)
                negs.append(text_of(chunk))
        if len(negs) == n_negatives + n_random:
            groups.append(Group(query, positive, tuple(negs), source, answerable))
    return groups


def keep_layers(model, n: int) -> list[int]:
    """Cut a BERT-style encoder down to ``n`` of its layers, evenly spaced with the first and the
    last kept (as DistilBERT initialises its student), in place; returns the kept indices. The
    saved config says ``num_hidden_layers = n``, so the model reloads as the smaller one."""
    import torch

    from rag.errors import ConfigError

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
    bfloat16 autocast: half the time of float32, within ~0.06 of its logits (README)."""
    from rag.rerank import CrossEncoderReranker

    model = CrossEncoderReranker(teacher, max_length, threads=threads, precision="bfloat16")
    return [model.score_with_logits(g.query, [g.positive, *g.negatives])[1]
            for g in tqdm(groups, desc="teacher logits", unit="q", disable=not progress)]


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


def train_cross_encoder(groups: Sequence[Group], out: Path, cfg: TrainConfig, progress: bool = True,
                        on_step: Callable[[int, float], None] | None = None) -> TrainReport:
    """Fine-tune and save a sentence-transformers ``CrossEncoder`` to ``out``."""
    import torch
    from sentence_transformers import CrossEncoder

    _seed_and_quiet(cfg.seed, cfg.threads)
    groups = list(groups)
    t_start = time.perf_counter()
    targets = (teacher_logits(groups, cfg.teacher, cfg.teacher_max_length, cfg.threads, progress)
               if cfg.teacher else None)
    t_teacher = time.perf_counter()
    ce = CrossEncoder(cfg.base_model, num_labels=1, max_length=cfg.max_length, device="cpu")
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


def plot_losses(losses: Sequence[float], path: Path, title: str = "cross-encoder training loss",
                ylabel: str = "listwise CE loss") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(losses, alpha=0.35, label="step loss")
    if len(losses) >= 10:
        w = max(5, len(losses) // 30)
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(range(w - 1, len(losses)), smooth, label=f"moving mean ({w})")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def labelled_from_beir(retriever, data, max_queries: int | None, seed: int) -> list[tuple[str, set[str], str]]:
    """(query, relevant ids, positive passage) for the data set's 'train' part queries.

    The positive is the relevant document's chunk that the retriever ranks highest for the
    query (or its first chunk), i.e. the passage the reranker will actually be shown."""
    sel = data.select("train")
    qids = list(sel.queries)
    if max_queries and len(qids) > max_queries:
        qids = sorted(random.Random(seed).sample(qids, max_queries))
    out = []
    index = retriever.index
    for qid in qids:
        relevant = set(sel.qrels[qid])
        ids = index.chunk_ids_of_docs(sorted(relevant))
        if not ids:
            continue
        chunks = index.chunks_by_ids(ids)
        res = retriever.search(sel.queries[qid], k=50, mode="hybrid", rerank=False,
                               filters=None)
        best = next((h.chunk for h in res.hits if h.chunk.doc_id in relevant), None)
        positive = best or chunks[min(chunks)]
        out.append((sel.queries[qid], relevant, positive.embed_text()))
    return out


def unanswerable_from_beir(retriever, directory: Path, data, max_queries: int | None, seed: int
                           ) -> list[tuple[str, set[str], str]]:
    """(question, {its paragraph}, the paragraph's text) for the 'train' part's unanswerable
    questions of a BEIR view whose queries carry ``metadata.is_impossible`` and
    ``metadata.source_paragraph`` (the SQuAD 2.0 view does). Empty for other data sets."""
    from eval.common import read_jsonl
    from eval.datasets import part_of, split_key

    rows = []
    for q in read_jsonl(Path(directory) / "queries.jsonl"):
        meta = q.get("metadata") or {}
        para = meta.get("source_paragraph")
        # The same article split as the answerable questions (split_key), so no dev/heldout article leaks in.
        if meta.get("is_impossible") and para and part_of(split_key(data.name, q["_id"], {para: 1})) == "train":
            rows.append((q["text"], para))
    if max_queries and len(rows) > max_queries:
        rows = random.Random(seed).sample(rows, max_queries)
    out = []
    index = retriever.index
    for text, para in rows:
        ids = index.chunk_ids_of_docs([para])
        if ids:
            chunks = index.chunks_by_ids(ids)
            out.append((text, {para}, chunks[min(chunks)].embed_text()))
    return out


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
    # Recorded beside the saved model (rag.embed.META_FILE), so the language gate knows it.
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
    from sentence_transformers import SentenceTransformer

    from rag.errors import ConfigError

    _seed_and_quiet(cfg.seed, cfg.threads)
    groups = [g for g in groups if g.answerable]
    if not groups:
        raise ConfigError("no training pairs: the sources gave no answerable 'train'-part query")
    try:
        model = SentenceTransformer(cfg.base_model, device="cpu")
    except Exception as exc:  # missing files, not a sentence-transformers model, no network
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
    from rag.embed import META_FILE

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


def title_queries(index, n: int, seed: int, min_words: int = 4) -> list[tuple[str, set[str], str]]:
    """(title, {its document}, the document's first chunk *without* the title), for ``n`` documents
    sampled with ``seed``: pseudo-queries that adapt the embedder to a corpus without any labelled
    query (paper titles read like SciFact's claims). The positive drops the title, or the pair
    would be a string match; titles shorter than ``min_words`` or shared by several documents
    (SQuAD's article names) describe no single passage and are skipped."""
    docs, offset = [], 0
    while batch := index.documents(limit=1000, offset=offset):
        docs += batch
        offset += len(batch)
    counts: dict[str, int] = {}
    for d in docs:
        counts[d["title"]] = counts.get(d["title"], 0) + 1
    usable = sorted(d["doc_id"] for d in docs if d["title"] and counts[d["title"]] == 1
                    and len(d["title"].split()) >= min_words)
    chosen = random.Random(seed).sample(usable, min(n, len(usable)))
    out = []
    for doc_id in chosen:
        chunks = index.chunks_by_ids(index.chunk_ids_of_docs([doc_id]))
        if chunks:
            first = chunks[min(chunks)]
            out.append((first.title, {doc_id}, first.text))
    return out
