"""``rag search`` and ``rag ask``: retrieval with per-stage scores, and cited answers."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from rag.cli.app import IndexOpt, JsonOpt, command, out, settings_and_index
from rag.errors import ConfigError, InvalidRequestError
from rag.types import Filters

FilterOpt = Annotated[Optional[list[str]], typer.Option(
    "--filter", "-f", help="doc_id=ID, source=GLOB or FIELD=VALUE (repeatable).")]


def parse_filters(values: list[str] | None) -> Filters:
    """``doc_id=ID`` (repeatable), ``source=GLOB``, ``FIELD=VALUE`` (document metadata)."""
    doc_ids, source, meta = [], None, []
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"filter {item!r} is not KEY=VALUE")
        if key == "doc_id":
            doc_ids.append(value)
        elif key == "source":
            source = value
        else:
            meta.append((key, value))
    return Filters(tuple(doc_ids), source, tuple(meta))


@command()
def search(
    query: Annotated[str, typer.Argument(help="The question or keywords.")],
    index: IndexOpt = None,
    mode: Annotated[str, typer.Option("--mode", "-m", help="bm25 | dense | hybrid")] = "hybrid",
    rerank: Annotated[Optional[bool], typer.Option("--rerank/--no-rerank", help="Default: on when a reranker is configured.")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of hits.")] = 10,
    filters: FilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ranked hits with per-stage scores (bm25, dense, fused, rerank) and timings."""
    from rag.retrieval.factory import build_retriever
    from rag.serialize import result_to_dict

    settings, index_dir = settings_and_index(index)
    retriever = build_retriever(settings, index_dir, rerank=rerank is not False)
    if rerank and retriever.reranker is None:
        raise ConfigError(f"--rerank: no reranker available ({retriever.reranker_status})")
    result = retriever.search(query, k=k, mode=mode, rerank=rerank, filters=parse_filters(filters))
    if as_json:
        print(json.dumps(result_to_dict(result), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{mode} search ({'reranked' if result.reranked else 'no rerank'}; "
                  f"dense {'on' if result.dense_used else 'off'}; query language {result.query_lang})")
    for col in ("#", "score", "bm25", "dense", "fused", "rerank", "document / heading", "text"):
        table.add_column(col, overflow="fold")

    def fmt(score, rank):
        return "-" if score is None else f"{score:.3f} (#{rank})"

    for n, h in enumerate(result.hits, start=1):
        c = h.chunk
        table.add_row(str(n), f"{h.score:.3f}", fmt(h.bm25_score, h.bm25_rank), fmt(h.dense_score, h.dense_rank),
                      fmt(h.fused_score, h.fused_rank), fmt(h.rerank_score, h.rerank_rank),
                      f"{c.doc_id}" + (f" › {c.heading}" if c.heading else ""), c.text[:100].replace("\n", " "))
    out.print(table)
    out.print("timings (ms): " + ", ".join(f"{k2} {v:.1f}" for k2, v in result.timings_ms.items()))


@command()
def ask(
    question: Annotated[str, typer.Argument(help="The question (any language; Korean answers in Korean).")],
    index: IndexOpt = None,
    k: Annotated[Optional[int], typer.Option("-k", help="Passages given to the LLM.")] = None,
    filters: FilterOpt = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Print the answer as it is generated.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Answer from the index with numbered citations, or refuse plainly; then list the sources."""
    from rag.answering.pipeline import AnswerPipeline
    from rag.models.generator import make_generator
    from rag.retrieval.factory import build_retriever
    from rag.serialize import answer_to_dict

    settings, index_dir = settings_and_index(index)
    retriever = build_retriever(settings, index_dir)
    generator = make_generator(settings)
    generator.load()
    pipeline = AnswerPipeline(retriever, generator, settings)
    answer = None
    for kind, value in pipeline.stream(question, k, parse_filters(filters)):
        if kind == "delta" and stream and not as_json:
            print(value, end="", flush=True)
        elif kind == "answer":
            answer = value
    if as_json:
        print(json.dumps(answer_to_dict(answer), ensure_ascii=False, indent=2))
        return
    _print_answer(answer, streamed=stream)


def _print_answer(answer, streamed: bool) -> None:
    generated = bool(answer.timings_ms.get("generate"))
    if streamed and generated:
        print()
    if not streamed or not generated:
        out.print(answer.text, highlight=False, markup=False)
    if answer.refused:
        out.print(f"[yellow](refused: {answer.refusal_reason})[/]")
    else:
        if answer.text != "" and streamed:
            out.print(f"[dim]checked answer:[/] {answer.text}", highlight=False)
        for c in answer.citations:
            ch = c.hit.chunk
            out.print(f"[{c.n}] {ch.title or ch.doc_id} — {ch.source}" + (f" › {ch.heading}" if ch.heading else ""),
                      highlight=False, markup=False)
    out.print("[dim]" + ", ".join(f"{k2} {v:.0f} ms" for k2, v in answer.timings_ms.items()) + "[/]")
