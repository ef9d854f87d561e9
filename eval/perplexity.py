"""Perplexity of a llama.cpp GGUF model on texts: how surprised the model is by them.

Each text is tokenized as the model's own tokenizer does it (``add_bos``: llama.cpp adds a BOS
token only when the model's vocabulary asks for one; Qwen2.5 and SmolLM2 do not) and cut into
**disjoint** windows of at most ``window`` tokens. Each window is evaluated from an empty context;
every token of a window but its first is scored by its conditional log-probability given the
window's earlier tokens, and the first token of each window is context only. Disjoint windows give
the first tokens of each window little context, so perplexity comes out somewhat higher than with a
sliding window (corpus/evaluating-llms/perplexity.md), at a fraction of the compute.

H, the mean negative log-likelihood per scored token, is reported in bits and in nats. Perplexity
is 2^H with H in bits (the course material's definition) and e^H with H in nats: the two are the
same number (2^(x / ln 2) = e^x); both are reported so that each definition can be checked.
Perplexity is per token, so models with different tokenizers are compared by bits per byte
(total bits / UTF-8 bytes of the scored tokens) instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ingest.loaders import iter_files
from rag.models.gguf import resolve_gguf
from rag.text import detect_lang

ROW_CHUNK = 32  # logit rows turned into float64 at a time: 32 × 152k vocabulary × 8 B ≈ 39 MB


@dataclass(frozen=True)
class Sample:
    """One text to score: a name for the report, its language ('en' / 'ko') and the text."""

    name: str
    lang: str
    text: str


@dataclass(frozen=True)
class Score:
    """The perplexity of some scored tokens (one text, one language, or everything pooled)."""

    tokens: int  # tokens scored (every token of a window but its first)
    windows: int
    bytes: int  # UTF-8 bytes of the scored tokens
    nll_nats_total: float  # -Σ ln p(token | earlier tokens of its window)
    nll_nats: float  # H in nats: the mean per scored token
    nll_bits: float  # H in bits
    ppl_bits: float  # 2^H, H in bits
    ppl_nats: float  # e^H, H in nats: the same number as ppl_bits
    bits_per_byte: float
    seconds: float

    @classmethod
    def of(cls, tokens: int, windows: int, n_bytes: int, nll_nats_total: float, seconds: float) -> Score:
        """All the derived figures from the sums (pooling adds sums, never averages of averages)."""
        h = nll_nats_total / tokens if tokens else math.nan
        bits = h / math.log(2)
        return cls(tokens, windows, n_bytes, nll_nats_total, h, bits, 2.0 ** bits, math.exp(h),
                   nll_nats_total / math.log(2) / n_bytes if n_bytes else math.nan, seconds)

    @classmethod
    def pool(cls, scores: Sequence[Score]) -> Score:
        """Token-weighted pooling: the perplexity of all the scored tokens together."""
        return cls.of(sum(s.tokens for s in scores), sum(s.windows for s in scores),
                      sum(s.bytes for s in scores), sum(s.nll_nats_total for s in scores),
                      sum(s.seconds for s in scores))


@dataclass(frozen=True)
class TextScore:
    name: str
    lang: str
    score: Score


@dataclass(frozen=True)
class PerplexityResult:
    """Per text, per language and pooled scores of one model with one window size."""

    model: str  # the name given (preset or path) or the file name
    model_general_name: str  # general.name from the GGUF metadata
    n_ctx: int
    window: int
    max_tokens: int | None  # each text was cut to this many tokens first (None: whole texts)
    texts: tuple[TextScore, ...]
    by_lang: dict[str, Score]
    pooled: Score
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_llama(model: str | Path, n_ctx: int = 512, threads: int = 2) -> Any:
    """A llama.cpp model that keeps the logits of every position (``logits_all``), which scoring
    needs; ``model`` is a preset name (smollm2, qwen2.5-0.5b, qwen2.5-1.5b) or a .gguf path."""
    from llama_cpp import Llama

    return Llama(model_path=str(resolve_gguf(str(model))), n_ctx=n_ctx, n_batch=min(512, n_ctx),
                 n_ubatch=min(512, n_ctx), logits_all=True, n_threads=threads, verbose=False)


def tokenize(llm: Any, text: str, max_tokens: int | None = None) -> list[int]:
    """The tokens the model would see for ``text`` (BOS as the model's vocabulary says), cut to
    ``max_tokens`` when given."""
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    return tokens[:max_tokens] if max_tokens else tokens


def windows(tokens: Sequence[int], size: int) -> list[Sequence[int]]:
    """Disjoint windows of at most ``size`` tokens; a last window of one token scores nothing and
    is dropped."""
    return [tokens[i:i + size] for i in range(0, len(tokens), size) if len(tokens[i:i + size]) > 1]


def neg_log_likelihood(logits: np.ndarray, targets: np.ndarray) -> float:
    """-Σ log_softmax(logits[i])[targets[i]] in nats, in float64, ``ROW_CHUNK`` rows at a time so
    that a 150k-token vocabulary never needs a whole float64 copy of the logits."""
    total = 0.0
    for start in range(0, len(targets), ROW_CHUNK):
        rows = logits[start:start + ROW_CHUNK].astype(np.float64)
        top = rows.max(axis=1)
        log_z = top + np.log(np.exp(rows - top[:, None]).sum(axis=1))
        picked = rows[np.arange(len(rows)), targets[start:start + ROW_CHUNK]]
        total += float((log_z - picked).sum())
    return total


def score_window(llm: Any, tokens: Sequence[int]) -> float:
    """Evaluate one window from an empty context; row i of the logits predicts token i + 1."""
    llm.reset()
    llm.eval(list(tokens))
    return neg_log_likelihood(llm.scores[:len(tokens) - 1], np.asarray(tokens[1:], dtype=np.int64))


def score_tokens(llm: Any, tokens: Sequence[int], window: int, bar: Any = None) -> Score:
    """The score of one token sequence over its disjoint windows."""
    t0 = time.perf_counter()
    parts = windows(tokens, window)
    total = 0.0
    for part in parts:
        total += score_window(llm, part)
        if bar is not None:
            bar.update(1)
    n_bytes = sum(len(llm.detokenize([t])) for part in parts for t in part[1:])
    return Score.of(sum(len(p) - 1 for p in parts), len(parts), n_bytes, total, time.perf_counter() - t0)


def as_samples(texts: Sequence[str | Sample]) -> list[Sample]:
    """Plain strings become samples named text-1, text-2, ... with their language detected."""
    return [t if isinstance(t, Sample) else Sample(f"text-{i}", detect_lang(t), t)
            for i, t in enumerate(texts, 1)]


def perplexity(model: str | Path | Any, texts: Sequence[str | Sample], n_ctx: int = 512,
               window: int | None = None, max_tokens: int | None = None, progress: bool = False,
               name: str | None = None) -> PerplexityResult:
    """Perplexity of ``model`` (a preset name, a .gguf path, or a ``Llama`` made with
    ``logits_all=True``, e.g. by :func:`load_llama`) on ``texts``, per text, per language and pooled.

    ``window`` (default: the context size) is the length of the disjoint windows; ``max_tokens``
    cuts each text first, to bound the time a long text takes."""
    t0 = time.perf_counter()
    llm = model if hasattr(model, "eval") else load_llama(model, n_ctx)
    if not getattr(llm, "_logits_all", False):
        raise ValueError("scoring needs the logits of every position: make the Llama with logits_all=True")
    window = window or llm.n_ctx()
    if not 2 <= window <= llm.n_ctx():
        raise ValueError(f"window must be between 2 and the context size {llm.n_ctx()}, not {window}")
    samples = as_samples(texts)
    token_lists = [tokenize(llm, s.text, max_tokens) for s in samples]
    if not samples or any(len(t) < 2 for t in token_lists):
        empty = [s.name for s, t in zip(samples, token_lists) if len(t) < 2]
        raise ValueError(f"nothing to score (fewer than two tokens) in {', '.join(empty)}" if empty
                         else "no texts to score")
    with tqdm(total=sum(len(windows(t, window)) for t in token_lists), desc="perplexity", unit="window",
              disable=not progress) as bar:
        scored = tuple(TextScore(s.name, s.lang, score_tokens(llm, toks, window, bar))
                       for s, toks in zip(samples, token_lists))
    langs = sorted({t.lang for t in scored})
    return PerplexityResult(
        model=name or _model_name(model, llm), model_general_name=str(llm.metadata.get("general.name", "")),
        n_ctx=llm.n_ctx(), window=window, max_tokens=max_tokens, texts=scored,
        by_lang={lang: Score.pool([t.score for t in scored if t.lang == lang]) for lang in langs},
        pooled=Score.pool([t.score for t in scored]), seconds=time.perf_counter() - t0)


def _model_name(model: Any, llm: Any) -> str:
    return str(model) if isinstance(model, (str, Path)) else Path(llm.model_path).name


def corpus_sample(corpus: Path, per_lang: int = 5, langs: Sequence[str] = ("en", "ko")) -> list[Sample]:
    """The first ``per_lang`` Markdown files of ``corpus`` (path order) in each language: a fixed,
    bilingual sample of the bundled documents (files its ``.ragignore`` excludes are left out)."""
    found: dict[str, list[Sample]] = {lang: [] for lang in langs}
    for path, rel in iter_files([corpus]):
        if path.suffix.lower() != ".md":
            continue
        text = path.read_text(encoding="utf-8")
        lang = detect_lang(text)
        if lang in found and len(found[lang]) < per_lang:
            found[lang].append(Sample(rel, lang, text))
    return [s for lang in langs for s in found[lang]]


def file_samples(paths: Sequence[Path]) -> list[Sample]:
    """Given files, each one text named by its path, its language detected."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        out.append(Sample(str(path), detect_lang(text), text))
    return out


def write_report(result: dict[str, Any], out: Path) -> None:
    """FILE.json (everything), FILE.md (a table per language and per text) and FILE.png (bars)."""
    from eval.common import write_json

    write_json(out.with_suffix(".json"), result)
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    _plot(result, out.with_suffix(".png"))


def _row(label: str, texts: int | str, s: dict[str, Any]) -> str:
    return (f"| {label} | {texts} | {s['tokens']} | {s['windows']} "
            f"| {s['nll_bits']:.3f} | {s['nll_nats']:.3f} "
            f"| {s['ppl_bits']:.2f} | {s['ppl_nats']:.2f} | {s['bits_per_byte']:.3f} | {s['seconds']:.1f} |")


def markdown(result: dict[str, Any]) -> str:
    """The report as Markdown: languages and pooled first, then every text."""
    head = ["| text | texts | tokens | windows | H bits | H nats | PPL 2^H | PPL e^H | bits/byte | s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    counts = {lang: sum(t["lang"] == lang for t in result["texts"]) for lang in result["by_lang"]}
    cut = (f"each text cut to its first {result['max_tokens']} tokens" if result["max_tokens"]
           else "whole texts")
    how = (f"Disjoint windows of {result['window']} tokens (context {result['n_ctx']}); every token of a "
           f"window but its first is scored; {cut}. H is the mean negative log-likelihood per scored token; "
           "PPL 2^H (bits) and e^H (nats) are the same number. Bits/byte compares models with different "
           "tokenizers.")
    lines = [f"# Perplexity: {result['model']} ({result['model_general_name']})", "", how, "", *head]
    lines += [_row(lang, counts[lang], s) for lang, s in result["by_lang"].items()]
    lines += [_row("**pooled**", len(result["texts"]), result["pooled"]), "", *head]
    lines += [_row(f"{t['name']} ({t['lang']})", 1, t["score"]) for t in result["texts"]]
    lines += ["", f"CPU: {result.get('cpu', '?')}. Total {result['seconds']:.1f} s. "
              f"Command: `{result.get('command', '')}`", ""]
    return "\n".join(lines)


def _plot(result: dict[str, Any], path: Path) -> None:
    """One bar per language (pooled, hatched) and per text, coloured by language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"en": "#37a", "ko": "#c53"}
    bars = [(f"{lang} (pooled)", lang, s["ppl_bits"]) for lang, s in result["by_lang"].items()]
    bars += [(Path(t["name"]).stem, t["lang"], t["score"]["ppl_bits"]) for t in result["texts"]]
    fig, ax = plt.subplots(figsize=(2 + 0.55 * len(bars), 5))
    drawn = ax.bar(range(len(bars)), [b[2] for b in bars], color=[colours.get(b[1], "#888") for b in bars])
    for bar in drawn[:len(result["by_lang"])]:
        bar.set_hatch("//")
    ax.bar_label(drawn, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("perplexity (2^H, lower is better)")
    ax.set_title(f"{result['model']}: perplexity per language and text (window {result['window']})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
