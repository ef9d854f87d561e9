"""Training data: (query, positive, negatives) groups mined with the project's own hybrid retriever,
from the 'train' part of labelled data sets only (dev and heldout queries are never trained on)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from rag.datasets import part_of, read_jsonl, split_key
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
