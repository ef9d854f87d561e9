"""`rag eval models`: the model-choice report (facts, quality, speed, perplexity, cost)."""

import json

import pytest

from eval.models_report import cost_per_1000, speed
from tests.conftest import FIXTURES
from tests.test_cli import rag

TINY = FIXTURES / "qa" / "tiny-squad.json"


def test_cost_counts_output_tokens_at_their_own_price():
    records = [{"prompt_tokens": 1000, "tokens": 100, "generate_ms": 2000.0},
               {"prompt_tokens": 3000, "tokens": 300, "generate_ms": 4000.0}]
    c = cost_per_1000(records, threads=2, price_in=0.5, price_out=2.0)
    # per question: 2,000 in x 0.5 + 200 out x 2.0 = 1,400 USD per million -> 1.4 USD per 1,000 questions
    assert c["usd"] == pytest.approx(1.4)
    assert c["cpu_seconds"] == pytest.approx(3.0 * 2 * 1000)  # 3 s wall per question x 2 threads
    assert cost_per_1000(records, 0, None, None)["usd"] is None


def test_speed_uses_only_questions_that_reached_the_model():
    records = [{"ttft_ms": 500.0, "generate_ms": 1500.0, "tokens": 11, "prompt_tokens": 400},
               {"ttft_ms": None, "generate_ms": 0.0, "tokens": 0, "prompt_tokens": 0}]  # refused by the gate
    s = speed(records)
    assert s["prefill_tok_s"] == 800.0 and s["decode_tok_s"] == 10.0 and s["ttft_p50_ms"] == 500.0


def test_remote_without_a_remote_generator_is_a_usage_error(tmp_path):
    r = rag("eval", "models", "--dataset", TINY, "--remote", "--out", tmp_path / "m.json", "--indexes", tmp_path,
            env={"RAG_GENERATOR": "local"})
    assert r.returncode != 0 and "RAG_GENERATOR=openai" in r.stderr
    assert list(tmp_path.iterdir()) == []  # refused before any index was built


@pytest.mark.slow
def test_models_report_end_to_end_with_the_tiny_model(tmp_path):
    out = tmp_path / "models.json"
    r = rag("eval", "models", "--dataset", TINY, "--part", "all", "--limit", "2", "--models", "smollm2,missing.gguf",
            "--judge", "smollm2", "--out", out, "--indexes", tmp_path, "-q",
            env={"RAG_LLM_CONTEXT_TOKENS": "2048", "RAG_EMBEDDER": "minilm", "RAG_MAX_TOKENS": "32"})
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert "missing.gguf" in result["skipped"]
    (row,) = result["models"]
    f = row["facts"]
    assert f["parameters"] > 100e6 and f["quantization"] == "Q4_1" and f["licence"] == "Apache-2.0"
    assert row["ram_bytes"] > 50e6 and row["perplexity"]["en"]["ppl_bits"] > 1 and row["perplexity"]["ko"]["tokens"] > 0
    d = row["datasets"][0]
    assert d["questions"] == 2 and d["cost"]["cpu_seconds"] >= 0
    assert d["quality"]["judge_unparsed"] is not None  # the judge ran (its verdicts may be unreadable)
    agreement = result["judge_agreement"]["qa"]["smollm2"]
    assert agreement["judged"] == 2 and set(agreement["vs_refusal_gold"]) >= {"accuracy", "kappa", "n"}
    assert "| smollm2 | local |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 1000
