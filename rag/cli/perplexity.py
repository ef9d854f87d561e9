"""``rag eval perplexity``: how well a GGUF model predicts text (the bundled corpus by default)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rag.cli.app import command, usage_error
from rag.cli.evaluate import eval_app


@command(eval_app, name="perplexity")
def perplexity(
    model: Annotated[str, typer.Option(
        help="GGUF model: smollm2, qwen2.5-0.5b, qwen2.5-1.5b or a .gguf path.")],
    files: Annotated[Optional[list[Path]], typer.Argument(
        help="Text files to score (default: a sample of the bundled corpus, English and Korean).")] = None,
    context: Annotated[int, typer.Option(
        help="Context size, and the length of the disjoint scoring windows.")] = 512,
    max_tokens: Annotated[int, typer.Option(
        help="Score only the first N tokens of each text (0: whole texts).")] = 512,
    per_lang: Annotated[int, typer.Option(help="Bundled sample: files per language.")] = 5,
    corpus: Annotated[Path, typer.Option(help="Bundled sample: the corpus directory.")] = Path("corpus"),
    threads: Annotated[int, typer.Option(help="llama.cpp threads.")] = 2,
    out: Annotated[Path, typer.Option(
        help="Report path: writes .json, .md and .png.")] = Path("eval/results/perplexity.json"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Perplexity (2^H, H in bits per token) and bits per byte of a GGUF model, per text, per
    language and pooled; JSON + Markdown + PNG."""
    from eval.common import cpu_info
    from eval.perplexity import corpus_sample, file_samples, load_llama, write_report
    from eval.perplexity import perplexity as measure

    missing = [str(f) for f in files or [] if not f.is_file()]
    if missing:
        usage_error(f"no such file: {', '.join(missing)}")
    if not files and not corpus.is_dir():
        usage_error(f"no corpus directory at {corpus}: give FILE arguments or --corpus DIR")
    if context < 2:
        usage_error("--context must be at least 2 tokens")
    samples = file_samples(files) if files else corpus_sample(corpus, per_lang)
    llm = load_llama(model, context, threads)
    try:
        result = measure(llm, samples, max_tokens=max_tokens or None, progress=not quiet, name=model)
    except ValueError as exc:
        usage_error(str(exc))
    report = result.to_dict() | {"cpu": cpu_info(), "threads": threads,
                                 "command": "rag eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])}
    write_report(report, out)
    typer.echo(out.with_suffix(".md").read_text())
