"""How much of the answer survives in sentence windows: the gold phrase in the prompt, per budget.

For answerable questions of the ``dev`` part (tuning data) of a SQuAD-format file, retrieval and
prompt building run as the service does (no LLM call: a vocabulary-only llama.cpp model counts
tokens), once with whole chunks and once per window budget. Reported: the share of prompts that
hold a gold answer phrase, and the prompt's median size. This chose ``window_tokens`` (English)
and ``window_tokens_lang`` (Korean). Index: the one ``rag eval answers`` builds for the file.

    python -m eval.window_recall --dataset ../shared/data/squad2_dev/dev-v2.0.json \\
        --index indexes/answers-squad2_dev-auto --out eval/results/window_recall_squad.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from eval.answers import load_qa, select
from eval.common import RESULTS, write_json
from rag.answering.pipeline import AnswerPipeline
from rag.config import Settings
from rag.retrieval.factory import build_retriever

BUDGETS = (64, 80, 120, 160)


class TokenCounter:
    """The generator's tokenizer alone (vocabulary-only llama.cpp model): prompts are built, not run."""

    def __init__(self, model: str) -> None:
        from llama_cpp import Llama

        from rag.models.gguf import resolve_gguf

        self._llm = Llama(model_path=str(resolve_gguf(model)), vocab_only=True, verbose=False)
        self.name, self.context_tokens = model, 4096

    def load(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def run(dataset: Path, index: Path, limit: int, seed: int) -> dict[str, Any]:
    _, _, items = load_qa(dataset)
    items = select([q for q in items if not q.impossible], "dev", limit, seed)
    base = Settings()
    retriever = build_retriever(base, index)
    counter = TokenCounter(base.llm_model)
    variants = {"chunk": {"passage_text": "chunk"}}
    variants.update({f"window {b}": {"passage_text": "window", "window_tokens": b, "window_tokens_lang": {}}
                     for b in BUDGETS})
    rows = []
    for name, update in variants.items():
        pipe = AnswerPipeline(retriever, counter, base.model_copy(update=update))
        held, sizes = 0, []
        for q in items:
            prep = pipe.prepare(q.question)
            if not prep.messages:
                continue
            held += any(a in prep.messages[-1]["content"] for a in q.answers)
            sizes.append(prep.prompt_tokens)
        rows.append({"variant": name, "questions": len(sizes), "gold_in_prompt": round(held / len(sizes), 4),
                     "prompt_tokens_p50": statistics.median(sizes)})
        print(rows[-1], flush=True)
    return {"dataset": dataset.parent.name, "part": "dev", "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "window_recall.json")
    args = ap.parse_args()
    result = run(args.dataset, args.index, args.limit, args.seed)
    result["command"] = (f"python -m eval.window_recall --dataset {args.dataset} --index {args.index} "
                         f"--out {args.out}")
    write_json(args.out, result)
    lines = [f"# Gold phrase in the prompt: whole chunks vs sentence windows ({result['dataset']}, dev part)", "",
             "| variant | questions | gold phrase in the prompt | prompt tokens p50 |", "|---|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['questions']} | {100 * r['gold_in_prompt']:.1f} % | {r['prompt_tokens_p50']} |"
              for r in result["rows"]]
    lines += ["", f"Command: `{result['command']}`"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
