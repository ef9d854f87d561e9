"""``rag ingest`` and ``rag info``: build an index and describe it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from rag.cli.app import (
    EXIT_SKIPPED,
    CollectionOpt,
    IndexOpt,
    JsonOpt,
    QuietOpt,
    command,
    out,
    settings_and_index,
    usage_error,
)


@command()
def ingest(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Files or directories (.md .txt .html .pdf .jsonl).")] = None,
    index: IndexOpt = None,
    collection: CollectionOpt = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove documents not found under PATHS.")] = False,
    delete: Annotated[Optional[list[str]], typer.Option("--delete", help="Remove this document id (repeatable).")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build a fresh index, ignoring the current one.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 3 if any input was skipped.")] = False,
    wait: Annotated[Optional[float], typer.Option("--wait", min=0, help=(
        "Seconds to wait while another writer (the service, another ingest) holds the index "
        "(default RAG_WRITE_LOCK_WAIT_S; 0: fail at once)."))] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Add, update and remove documents incrementally; commit a new index version atomically."""
    from ingest.pipeline import ingest as run_ingest

    if not paths and not delete:
        usage_error("give PATHS to ingest and/or --delete DOC_ID")
    if prune and not paths:
        usage_error("--prune needs the PATHS that hold every document to keep")
    settings, index_dir = settings_and_index(index, collection, create=True)
    report = run_ingest(paths or [], index_dir, settings, prune=prune, delete=delete or [],
                        rebuild=rebuild, progress=not quiet and not as_json,
                        lock_wait_s=settings.write_lock_wait_s if wait is None else wait,
                        on_progress=None if quiet or as_json else _say_when_waiting())
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        _print_ingest(report, index_dir)
    if strict and report.skipped:
        raise typer.Exit(EXIT_SKIPPED)


def _say_when_waiting():
    """An ``on_progress`` that tells, once, that the ingest waits for another writer."""
    told = False

    def on_progress(stage: str, done: int, total: int) -> None:
        nonlocal told
        if stage == "waiting for the index lock" and not told:
            told = True
            print("waiting for the index: another writer holds it …", file=sys.stderr, flush=True)

    return on_progress


def _print_ingest(d, index_dir: Path) -> None:
    table = Table(title=f"ingest into {index_dir}", show_header=False)
    rows = [("documents added / updated / unchanged / removed", f"{d.added} / {d.updated} / {d.unchanged} / {d.removed}"),
            ("documents skipped", str(len(d.skipped))),
            ("chunks added / removed / total", f"{d.chunks_added} / {d.chunks_removed} / {d.chunks_total}"),
            ("documents in index", str(d.documents_total)),
            ("index version", f"{d.version}" + ("" if d.committed else " (unchanged, nothing committed)")),
            ("seconds (embedding)", f"{d.seconds:.2f} ({d.embed_seconds:.2f})"),
            ("chunks per second", f"{d.chunks_per_second:.1f}")]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
    if d.skipped:
        out.print(f"[yellow]skipped {len(d.skipped)} input(s):[/]")
        for s in d.skipped[:50]:
            out.print(f"  {s.source}: {s.reason}", highlight=False, markup=False, soft_wrap=True)
        if len(d.skipped) > 50:
            out.print(f"  ... and {len(d.skipped) - 50} more (use --json for all)")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@command()
def info(index: IndexOpt = None, collection: CollectionOpt = None, as_json: JsonOpt = False) -> None:
    """Describe an index: models, settings, counts, versions, size on disk."""
    from rag.models.reranker import reranker_status
    from rag.retrieval.factory import open_index

    settings, index_dir = settings_and_index(index, collection)
    ix = open_index(index_dir, settings)
    m = ix.manifest
    rerank_status = reranker_status(settings)
    sizes = ix.disk_bytes()
    versions = sorted(p.name for p in Path(index_dir).glob("v[0-9]*") if p.is_dir())
    if as_json:
        print(json.dumps({**m, "path": str(ix.path), "versions_on_disk": versions, "reranker": rerank_status,
                          "disk_bytes": sum(sizes.values())}, ensure_ascii=False, indent=2))
        return
    e, c, b, t = m["embedder"], m["chunking"], m["bm25"], m["tokenizer"]
    table = Table(title=f"index {index_dir}", show_header=False)
    for k, v in [
        ("version", f"{m['version']} (schema {m['schema_version']}); on disk: {', '.join(versions)}"),
        ("created / updated", f"{m['created_at']} / {m['updated_at']}"),
        ("documents / chunks", f"{m['counts']['documents']} / {m['counts']['chunks']}"),
        ("chunk languages", ", ".join(f"{k}: {v}" for k, v in m.get("languages", {}).items()) or "-"),
        ("embedder", f"{e['name']} ({e['dim']}-d, max {e['max_tokens']} tokens, languages: {e.get('languages')})"),
        ("chunking", f"max {c['max_tokens']} tokens, overlap {c['overlap']}"),
        ("dense index", f"FAISS {m['dense']['kind']} ({m['dense']['metric']})"),
        ("BM25", f"k1={b['k1']} b={b['b']} epsilon={b['epsilon']}, vocabulary {m['counts']['vocabulary']}"),
        ("tokenizer", f"stem={t['stem']} stopwords={t['stopwords']} korean={t['korean']}"),
        ("retrieval (settings)", f"{settings.retrieval_mode}, fusion {settings.fusion} (alpha {settings.fusion_alpha})"),
        ("reranker", rerank_status),
        ("size on disk", f"{human_bytes(sum(sizes.values()))} ("
         + ", ".join(f"{k} {human_bytes(v)}" for k, v in sizes.items()) + ")"),
    ]:
        table.add_row(k, v)
    out.print(table)
    ix.close()
