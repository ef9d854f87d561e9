"""Perplexity with the real tiny model (SmolLM2-135M in llama.cpp): values, units, windows, the CLI."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from eval.perplexity import Sample, load_llama, neg_log_likelihood, perplexity, score_window, tokenize
from rag.cli import app
from rag.models.gguf import resolve_gguf

SENTENCE = ("The children walked to school in the morning, and after their lessons they played football "
            "in the park until it was time to go home for dinner.")
PARAGRAPH = ("Perplexity measures how surprised a language model is by a text. Lower values mean the model "
             "predicts the next token well; a model that guesses uniformly among four options has "
             "perplexity four. ")


@pytest.fixture(scope="module")
def llm():
    """SmolLM2 with the logits of every position, loaded once for this module (context 256)."""
    return load_llama(resolve_gguf("smollm2"), n_ctx=256)


def test_natural_text_is_less_perplexing_than_the_same_words_shuffled(llm):
    words = SENTENCE.split()
    random.Random(7).shuffle(words)
    natural = perplexity(llm, [SENTENCE]).pooled
    shuffled = perplexity(llm, [" ".join(words)]).pooled
    assert math.isfinite(natural.ppl_bits) and natural.ppl_bits > 1
    assert natural.ppl_bits < shuffled.ppl_bits / 2


def test_bits_and_nats_agree_and_every_token_but_the_first_is_scored(llm):
    result = perplexity(llm, [Sample("s", "en", SENTENCE)])
    s = result.texts[0].score
    assert s.nll_bits == pytest.approx(s.nll_nats / math.log(2))
    assert s.ppl_bits == pytest.approx(s.ppl_nats) and s.ppl_bits == pytest.approx(math.exp(s.nll_nats))
    n = len(llm.tokenize(SENTENCE.encode("utf-8"), add_bos=True))
    assert (s.tokens, s.windows) == (n - 1, 1)
    assert s.bytes == len(SENTENCE.encode("utf-8")) - len(llm.detokenize(tokenize(llm, SENTENCE)[:1]))
    assert s.bits_per_byte == pytest.approx(s.nll_nats_total / math.log(2) / s.bytes)
    assert result.pooled == result.by_lang["en"] == s and result.window == result.n_ctx == 256


def test_a_long_text_is_scored_in_disjoint_windows(llm):
    text = PARAGRAPH * 6
    tokens = tokenize(llm, text)
    size = 64
    assert len(tokens) > 3 * size
    s = perplexity(llm, [text], window=size).pooled
    assert s.windows == math.ceil(len(tokens) / size) - (len(tokens) % size == 1)
    assert s.tokens == len(tokens) - math.ceil(len(tokens) / size)  # the first of each window is context only
    by_window = sum(score_window(llm, tokens[i:i + size]) for i in range(0, len(tokens), size))
    assert s.nll_nats_total == pytest.approx(by_window, rel=1e-6)
    # One window sees the earlier repetitions: the repeated paragraph becomes predictable.
    assert perplexity(llm, [text]).pooled.ppl_bits < s.ppl_bits
    assert perplexity(llm, [text], window=size, max_tokens=100).pooled.tokens == 100 - 2
    with pytest.raises(ValueError, match="window must be"):
        perplexity(llm, [text], window=1024)


def test_log_softmax_is_stable_and_exact_in_float64():
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(70, 500)) * 30 + 1000).astype(np.float32)  # large: exp() would overflow
    targets = rng.integers(0, 500, size=70)
    x = logits.astype(np.float64)
    expected = sum(math.log(np.exp(row - row.max()).sum()) + row.max() - row[t] for row, t in zip(x, targets))
    assert neg_log_likelihood(logits, targets) == pytest.approx(expected, rel=1e-12)


def test_cli_writes_the_report_and_refuses_a_missing_file(tmp_path):
    doc = tmp_path / "note.md"
    doc.write_text(SENTENCE + "\n", encoding="utf-8")
    out = tmp_path / "ppl.json"
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "perplexity", "--model", "smollm2", str(doc), "--context", "256",
                            "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert all(out.with_suffix(ext).stat().st_size > 0 for ext in (".json", ".md", ".png"))
    report = json.loads(out.read_text())
    assert report["texts"][0]["name"] == str(doc) and report["pooled"]["tokens"] > 10
    assert report["model"] == "smollm2" and report["cpu"] and "PPL 2^H" in r.stdout

    r = runner.invoke(app, ["eval", "perplexity", "--model", "smollm2", str(tmp_path / "absent.txt")])
    assert r.exit_code == 2 and "no such file: " in r.stderr and "absent.txt" in r.stderr
    r = runner.invoke(app, ["eval", "perplexity", "--model", str(tmp_path / "none.gguf"), str(doc)])
    assert r.exit_code == 1 and "no GGUF model file at" in r.stderr
