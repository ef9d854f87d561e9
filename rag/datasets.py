"""Labelled data sets as (corpus documents, queries, qrels), BEIR-style, and their fixed
train/dev/heldout parts: read by the evals and by model training.

KorQuAD 1.0's licence (CC BY-ND) forbids storing derived files, so its retrieval view is
built here in memory at run time and never written to disk.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.types import Document


def read_jsonl(path: Path) -> Iterator[dict]:
    """The JSON objects of a JSON Lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)

HELDOUT_SEED = "rag-heldout-v1"


PARTS = ("heldout", "dev", "train")


def part_of(key: str) -> str:
    """'heldout' (40 %), 'dev' (10 %) or 'train' (50 %), fixed by a hash of the key (a query id,
    or an article for SQuAD-style data): the reranker trains only on 'train', its settings are
    tuned on 'dev', and every published figure is measured on 'heldout'."""
    h = int(hashlib.sha1(f"{HELDOUT_SEED}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if h < 0.4 else "dev" if h < 0.5 else "train"


def split_key(dataset: str, query_id: str, relevant: dict[str, int]) -> str:
    """SQuAD-derived sets split by article (questions of one article share paragraphs)."""
    if "squad" in dataset.lower() or "korquad" in dataset.lower():
        doc = sorted(relevant)[0] if relevant else query_id
        return "article:" + doc.rsplit("-", 1)[0]
    return query_id


@dataclass
class RetrievalSet:
    name: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    corpus_path: Path | None = None  # a BEIR corpus.jsonl to ingest, or
    documents: list[Document] = field(default_factory=list)  # documents built in memory

    def select(self, part: str = "all", limit: int | None = None, seed: int = 13) -> "RetrievalSet":
        if part not in ("all",) + PARTS:
            raise ValueError(f"part must be all, {', '.join(PARTS)}; not {part!r}")
        qids = [q for q in self.queries if q in self.qrels
                and (part == "all" or part_of(split_key(self.name, q, self.qrels[q])) == part)]
        if limit and len(qids) > limit:
            qids = sorted(random.Random(seed).sample(qids, limit))
        return RetrievalSet(self.name, {q: self.queries[q] for q in qids}, {q: self.qrels[q] for q in qids},
                            self.corpus_path, self.documents)


def load_beir(directory: Path, split: str) -> RetrievalSet:
    directory = Path(directory)
    queries = {str(q["_id"]): q["text"] for q in read_jsonl(directory / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with open(directory / "qrels" / f"{split}.tsv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if int(row["score"]) > 0:
                qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    # A generic directory name ("beir") says nothing: name the set after its parent (squad2_dev).
    name = directory.resolve().parent.name if directory.name in ("beir", "data") else directory.name
    return RetrievalSet(name, queries, qrels, corpus_path=directory / "corpus.jsonl")


def iter_squad(path: Path) -> Iterator[tuple[str, str, str, dict]]:
    """(article title, paragraph id, context, qa) for every question of a SQuAD-format file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    for a, article in enumerate(data):
        for p, para in enumerate(article["paragraphs"]):
            pid = f"{a:02d}-{p:03d}"
            for qa in para["qas"]:
                yield article["title"], pid, para["context"], qa


def load_korquad(path: Path) -> RetrievalSet:
    """Paragraphs as the corpus, questions as queries, the source paragraph as the one relevant doc."""
    docs: dict[str, Document] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for title, pid, context, qa in iter_squad(path):
        doc_id = f"korquad-{pid}"
        if doc_id not in docs:
            docs[doc_id] = Document(doc_id=doc_id, text=context, title=title.replace("_", " "),
                                    source=f"korquad:{pid}", format="korquad")
        queries[qa["id"]] = qa["question"]
        qrels[qa["id"]] = {doc_id: 1}
    return RetrievalSet("korquad1_dev", queries, qrels, documents=list(docs.values()))
