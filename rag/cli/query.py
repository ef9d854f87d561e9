"""``rag search``, ``rag ask`` and ``rag chat``: retrieval with per-stage scores, cited answers, conversations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from rag.cli.app import CollectionOpt, IndexOpt, JsonOpt, command, out, settings_and_index
from rag.errors import ConfigError, InvalidRequestError
from rag.types import Filters, Turn

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
    collection: CollectionOpt = None,
    mode: Annotated[Optional[str], typer.Option("--mode", "-m", help="bm25 | dense | hybrid (default: RAG_RETRIEVAL_MODE).")] = None,
    rerank: Annotated[Optional[bool], typer.Option("--rerank/--no-rerank", help="Default: on when a reranker is configured.")] = None,
    k: Annotated[Optional[int], typer.Option("-k", help="Number of hits (default: RAG_TOP_K).")] = None,
    filters: FilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ranked hits with per-stage scores (bm25, dense, fused, rerank) and timings."""
    from rag.retrieval.factory import build_retriever
    from rag.serialize import result_to_dict

    settings, index_dir = settings_and_index(index, collection)
    retriever = build_retriever(settings, index_dir, rerank=rerank is not False)
    if rerank and retriever.reranker is None:
        raise ConfigError(f"--rerank: no reranker available ({retriever.reranker_status})")
    result = retriever.search(query, k=k, mode=mode, rerank=rerank, filters=parse_filters(filters))
    if as_json:
        print(json.dumps(result_to_dict(result), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{result.mode} search ({'reranked' if result.reranked else 'no rerank'}; "
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
    collection: CollectionOpt = None,
    k: Annotated[Optional[int], typer.Option("-k", help="Passages given to the LLM.")] = None,
    filters: FilterOpt = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Print the answer as it is generated.")] = True,
    history: Annotated[Optional[Path], typer.Option(
        "--history", help="JSON file of earlier turns [{role: user|assistant, content}], oldest first.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer from the index with numbered citations, or refuse plainly; then list the sources."""
    from rag.serialize import answer_to_dict

    settings, index_dir = settings_and_index(index, collection)
    pipeline = _pipeline(settings, index_dir)
    answer = _run(pipeline, question, k, parse_filters(filters), _read_history(history), stream and not as_json)
    if as_json:
        print(json.dumps(answer_to_dict(answer), ensure_ascii=False, indent=2))
        return
    _print_answer(answer, streamed=stream)


@command()
def chat(
    index: IndexOpt = None,
    collection: CollectionOpt = None,
    k: Annotated[Optional[int], typer.Option("-k", help="Passages given to the LLM.")] = None,
    filters: FilterOpt = None,
) -> None:
    """A conversation in the terminal: follow-up questions are understood in context (an empty line
    or Ctrl-D ends it)."""
    settings, index_dir = settings_and_index(index, collection)
    pipeline = _pipeline(settings, index_dir)
    turns: list[Turn] = []
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            break
        if not question:
            break
        answer = _run(pipeline, question, k, parse_filters(filters), turns, live=True)
        if answer.rewritten:
            out.print(f"[dim](searched: {answer.query})[/]", highlight=False)
        _print_answer(answer, streamed=True)
        turns += [Turn("user", question), Turn("assistant", answer.text)]


def _pipeline(settings, index_dir):
    from rag.answering.pipeline import AnswerPipeline
    from rag.models.generator import make_generator
    from rag.retrieval.factory import build_retriever

    retriever = build_retriever(settings, index_dir)
    generator = make_generator(settings)
    generator.load()
    return AnswerPipeline(retriever, generator, settings)


def _run(pipeline, question: str, k: int | None, filters: Filters, history: list[Turn], live: bool):
    """The final answer; with ``live``, the deltas are printed as they come."""
    answer = None
    for kind, value in pipeline.stream(question, k, filters, history=history):
        if kind == "delta" and live:
            print(value, end="", flush=True)
        elif kind == "answer":
            answer = value
    return answer


def _read_history(path: Path | None) -> list[Turn]:
    if path is None:
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        turns = [Turn(str(r["role"]), str(r["content"])) for r in rows]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequestError(f"--history {path}: expected a JSON list of {{role, content}} ({exc})") from None
    if any(t.role not in ("user", "assistant") for t in turns):
        raise InvalidRequestError(f"--history {path}: roles must be 'user' or 'assistant'")
    return turns


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
