"""`rag eval ...` commands: retrieval quality now, answer quality with the /ask pipeline."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rag.config import get_settings
from rag.errors import RagError

app = typer.Typer(help="Offline evaluation: retrieval quality (and answers).", no_args_is_help=True)


def settings_with(**options):
    """The service settings with the command-line options that were given (None = not given)."""
    return get_settings().model_copy(update={k: v for k, v in options.items() if v is not None})


def apply_overrides(settings, pairs: list[str]):
    """``settings`` with ``KEY=VALUE`` overrides, validated like environment variables
    (an unknown key or a bad value is a ConfigError naming it)."""
    from pydantic import ValidationError

    from rag.config import Settings, settings_error
    from rag.errors import ConfigError

    update = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lower().removeprefix("rag_")
        if not sep or key not in Settings.model_fields:
            raise ConfigError(f"--set expects KEY=VALUE with a setting name, not {pair!r}")
        update[key] = None if value.strip().lower() in ("none", "null") else value.strip()
    try:
        return Settings.model_validate({**settings.model_dump(), **update})
    except ValidationError as exc:
        raise ConfigError(f"--set: {settings_error(exc, env_names=False)}") from None


def build_index(data, index_dir: Path, settings, progress: bool = True):
    """Ingest the data set's corpus into ``index_dir`` (incremental: an up-to-date index is reused)."""
    from ingest.pipeline import ingest

    paths = [data.corpus_path] if data.corpus_path else []
    return ingest(paths, index_dir, settings, documents=data.documents, progress=progress)


@app.command("retrieval")
def retrieval(
    dataset: Annotated[Optional[Path], typer.Option(help="A BEIR directory (corpus.jsonl, queries.jsonl, qrels/).")] = None,
    split: Annotated[str, typer.Option(help="qrels split name.")] = "test",
    korquad: Annotated[Optional[Path], typer.Option(help="KorQuAD 1.0 JSON instead of --dataset (view built in memory).")] = None,
    index: Annotated[Optional[Path], typer.Option("--index", "-i", help="Index to (re)use; default indexes/eval-NAME-EMBEDDER.")] = None,
    out: Annotated[Path, typer.Option(help="Report path: writes .json, .md and .png.")] = Path("eval/results/retrieval.json"),
    modes: Annotated[str, typer.Option(help="Comma list: bm25, dense, hybrid, hybrid-rrf, hybrid-convex, hybrid+rerank; "
                                       "'@key=value;...' overrides settings, e.g. hybrid@fusion_alpha=0.3")] = "bm25,dense,hybrid",
    part: Annotated[str, typer.Option(help="all | heldout | train (fixed hash split of query ids).")] = "all",
    limit: Annotated[Optional[int], typer.Option(help="Sample this many queries (fixed seed).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed for --limit.")] = 13,
    embedder: Annotated[Optional[str], typer.Option(help="Embedder for the index (default: RAG_EMBEDDER).")] = None,
    korean_tokenizer: Annotated[Optional[str], typer.Option(help="kiwi | none (whitespace) for the BM25 index.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Retrieval metrics for each mode over a BEIR data set or KorQuAD; JSON + Markdown + PNG."""
    from eval.datasets import load_beir, load_korquad
    from eval.retrieval import parse_modes, run_eval, write_report
    from rag.cli import load_retriever

    settings = settings_with(embedder=embedder, tokenizer_korean=korean_tokenizer)
    try:
        if korquad:
            data = load_korquad(korquad)
        elif dataset:
            data = load_beir(dataset, split)
        else:
            raise typer.BadParameter("give --dataset DIR or --korquad FILE")
        data = data.select(part, limit, seed)
        specs = parse_modes(modes)
        tag = f"{data.name}-{settings.embedder}" + ("" if settings.tokenizer_korean == "kiwi" else "-ws")
        index_dir = index or Path("indexes") / f"eval-{tag.replace('/', '_')}"
        report = build_index(data, index_dir, settings, progress=not quiet)
        retriever, status = load_retriever(settings, index_dir, rerank=None if any(s.rerank for s in specs) else False)
        if any(s.rerank for s in specs) and retriever.reranker is None:
            raise typer.BadParameter(f"a +rerank mode needs a reranker: {status}")
        result = run_eval(data, retriever, specs, settings, progress=not quiet)
    except RagError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    result["part"] = part
    result["reranker"] = status if any(s.rerank for s in specs) else "not used"
    result["ingest_seconds"] = round(report.seconds, 1)
    result["command"] = "rag eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    write_report(result, out)
    typer.echo(out.with_suffix(".md").read_text())


@app.command("answers")
def answers(
    dataset: Annotated[Path, typer.Option(help="SQuAD-format JSON: SQuAD 2.0 (with unanswerable questions) or KorQuAD 1.0.")],
    out: Annotated[Path, typer.Option(help="Report path: writes .json, .md and .png.")] = Path("eval/results/answers.json"),
    limit: Annotated[Optional[int], typer.Option(help="Sample this many questions (fixed seed).")] = None,
    part: Annotated[str, typer.Option(help="heldout | dev | train | all (fixed hash split by article).")] = "heldout",
    seed: Annotated[int, typer.Option(help="Sampling seed for --limit.")] = 13,
    index: Annotated[Optional[Path], typer.Option("--index", "-i", help="Index to (re)use; default indexes/answers-NAME-EMBEDDER.")] = None,
    model: Annotated[Optional[str], typer.Option(help="LLM (default: RAG_LLM_MODEL), e.g. qwen2.5-0.5b, qwen2.5-1.5b, smollm2.")] = None,
    embedder: Annotated[Optional[str], typer.Option(help="Embedder for the index (default: RAG_EMBEDDER).")] = None,
    rerank: Annotated[Optional[bool], typer.Option("--rerank/--no-rerank", help="Default: rerank when a reranker is configured and present.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting, KEY=VALUE (repeatable), e.g. --set context_passages=3 --set gate_rerank=0.5.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Answer quality end to end (retrieval over the whole corpus, gate, LLM): EM/F1, contains-gold,
    refusals, citations, ROUGE-L/BLEU, TTFT and tokens/s; JSON + Markdown + PNG."""
    from eval.answers import load_qa, run, select, write_report
    from rag.answer import AnswerPipeline, make_generator
    from rag.cli import load_retriever
    from rag.errors import ConfigError

    settings = settings_with(llm_model=model, embedder=embedder)
    try:
        settings = apply_overrides(settings, overrides or [])
        if not dataset.is_file():
            raise ConfigError(f"no such data set file: {dataset}")
        name, docs, items = load_qa(dataset)
        chosen = select(items, part, limit, seed)
        if not chosen:
            raise ConfigError(f"no questions in part {part!r} of {dataset}")
        from ingest.pipeline import ingest

        index_dir = index or Path("indexes") / f"answers-{name}-{settings.embedder}".replace("/", "_")
        ingest([], index_dir, settings, documents=docs, progress=not quiet)
        retriever, status = load_retriever(settings, index_dir, rerank)
        generator = make_generator(settings)
        generator.load()
        pipeline = AnswerPipeline(retriever, generator, settings)
        result = run(pipeline, name, chosen, keep_text="korquad" not in name.lower(), progress=not quiet)
    except RagError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code)
    m = retriever.index.manifest
    result.update(part=part, model=generator.name, reranker=status,
                  index={"path": str(index_dir), "embedder": m["embedder"]["name"], "chunks": m["counts"]["chunks"]},
                  settings={k: getattr(settings, k) for k in ("llm_model", "llm_context_tokens", "max_tokens",
                                                              "temperature", "context_passages", "gate_bm25",
                                                              "gate_dense", "gate_rerank", "fusion",
                                                              "rerank_precision", "citation_repair",
                                                              "prompt_version")},
                  command="rag eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
    write_report(result, out)
    typer.echo(out.with_suffix(".md").read_text())
