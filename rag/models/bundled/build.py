"""Package a trained model as a bundled one: ``python -m rag.models.bundled.build SRC NAME VERSION``.

Copies the tokenizer and config files of ``SRC`` (a directory ``rag train-reranker`` wrote), stores
the weights once more in half precision (floating tensors only; they are widened to float32 at load)
as ``model.safetensors``, and writes ``bundle.json`` with the weights' SHA-256. The model card
(``MODEL_CARD.md``) is written by hand next to it.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rag.models.bundled import ROOT, WEIGHTS, sha256_of

SKIP = {"training_report.json"}


def build(src: Path, name: str, version: int, label: str, base_model: str) -> Path:
    from safetensors.torch import load_file, save_file

    dest = ROOT / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.suffix in (".json", ".txt") and f.name not in SKIP:
            shutil.copyfile(f, dest / f.name)
    tensors = load_file(str(src / WEIGHTS))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(half, str(dest / WEIGHTS), metadata={"format": "pt"})
    manifest = {"name": label, "version": version, "base_model": base_model, "kind": "cross-encoder",
                "dtype": "float16", "file": WEIGHTS, "sha256": sha256_of(dest / WEIGHTS),
                "bytes": (dest / WEIGHTS).stat().st_size}
    (dest / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", type=Path, help="the trained model directory")
    ap.add_argument("name", help="bundle directory name, e.g. reranker")
    ap.add_argument("version", type=int)
    ap.add_argument("--label", default="minilm-l6-cross-encoder", help="the name status lines show")
    ap.add_argument("--base-model", default="sentence-transformers/all-MiniLM-L6-v2")
    args = ap.parse_args()
    dest = build(args.src, args.name, args.version, args.label, args.base_model)
    print(json.dumps(json.loads((dest / "bundle.json").read_text()), indent=2))


if __name__ == "__main__":
    main()
