"""Text analysis shared by ingest and query: the BM25 tokenizer and language detection.

English (and other non-Hangul scripts): Unicode word tokens, lower-cased, stop words dropped,
Snowball-stemmed (PyStemmer). Korean: Kiwi morphological analysis keeps content morphemes and
drops particles and endings, so that "서울에서" and "서울은" both index as "서울".
The configuration is recorded in the index manifest so that queries use the same analysis.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import Stemmer

# The classic English stop-word list used by NLTK/scikit-learn style analysers (lower-cased).
ENGLISH_STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are aren't as at be because been before
    being below between both but by can can't cannot could couldn't did didn't do does doesn't
    doing don't down during each few for from further had hadn't has hasn't have haven't having he
    he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if
    in into is isn't it it's its itself let's me more most mustn't my myself no nor not of off on
    once only or other ought our ours ourselves out over own same shan't she she'd she'll she's
    should shouldn't so some such than that that's the their theirs them themselves then there
    there's these they they'd they'll they're they've this those through to too under until up
    very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's
    which while who who's whom why why's with won't would wouldn't you you'd you'll you're you've
    your yours yourself yourselves s t d ll m o re ve y just now don should've
    """.split()
)

_HANGUL = "\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f"
_HANGUL_RE = re.compile(f"[{_HANGUL}]")
# Word characters that are not Hangul: Hangul runs go to Kiwi instead.
_WORD_RE = re.compile(f"(?:(?![{_HANGUL}])\\w)+")
# Kiwi tags kept: nouns, numerals, pronouns, verb/adjective stems, roots, adverbs, Hanja.
_KIWI_KEEP = ("NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "XR", "MAG", "SH")


def has_hangul(text: str) -> bool:
    return _HANGUL_RE.search(text) is not None


def detect_lang(text: str) -> str:
    """'ko' when Hangul makes up at least 30 % of the letters, else 'en' (a cheap, stable rule)."""
    letters = sum(1 for ch in text if ch.isalpha())
    if not letters:
        return "en"
    hangul = len(_HANGUL_RE.findall(text))
    return "ko" if hangul / letters >= 0.3 else "en"


_kiwi_lock = threading.Lock()
_kiwi = None


def _get_kiwi():
    global _kiwi
    with _kiwi_lock:
        if _kiwi is None:
            from kiwipiepy import Kiwi

            _kiwi = Kiwi(num_workers=0)
        return _kiwi


def warm_up(korean: str = "kiwi") -> None:
    """Load what the first Korean query would otherwise load (Kiwi's model takes seconds), and run
    it once: servers call this at start-up so that no request pays for it."""
    if korean == "kiwi":
        _get_kiwi().tokenize("형태소 분석을 미리 불러옵니다.")


# An English sentence ends at . ! ? (and closing quotes/brackets) before whitespace and a capital,
# digit, quote or bracket; "e.g. the" and "3.5 GB" do not end one.
_SENT_END = re.compile(r"(?<=[.!?。])[\"')\]]*\s+(?=[A-Z0-9\"'(\[*`])")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` of ``text``, in order, covering its non-blank content.

    Lines are split first (Markdown headings, bullets and table rows are units of their own);
    a line with Hangul is split by Kiwi (it knows Korean endings such as "-다." and "-요?"), any
    other line by punctuation followed by a capitalised word."""
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text):
        start, body = line.start(), line.group(0)
        if not body.strip():
            continue
        if has_hangul(body):
            parts = [(s.start, s.end) for s in _get_kiwi().split_into_sents(body)]
        else:
            cuts = [m.start() for m in _SENT_END.finditer(body)]
            bounds = [0, *cuts, len(body)]
            parts = list(zip(bounds[:-1], bounds[1:]))
        for a, b in parts:
            seg = body[a:b]
            if seg.strip():
                lead = len(seg) - len(seg.lstrip())
                spans.append((start + a + lead, start + a + len(seg.rstrip())))
    return spans


class Tokenizer:
    """BM25 analyser. Cheap to build; Kiwi loads lazily, the first time Korean text is seen."""

    VERSION = 1

    def __init__(self, stem: bool = True, stopwords: bool = True, korean: str = "kiwi") -> None:
        if korean not in ("kiwi", "none"):
            raise ValueError(f"korean must be 'kiwi' or 'none', not {korean!r}")
        self.stem = stem
        self.stopwords = stopwords
        self.korean = korean
        self._stemmer = Stemmer.Stemmer("english") if stem else None

    # -- configuration round-trip (stored in manifest.json) --------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "name": "rag-unicode",
            "version": self.VERSION,
            "lowercase": True,
            "stem": "snowball-english" if self.stem else None,
            "stopwords": "english" if self.stopwords else None,
            "korean": self.korean,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Tokenizer":
        return cls(stem=bool(cfg.get("stem")), stopwords=bool(cfg.get("stopwords")),
                   korean=cfg.get("korean", "kiwi"))

    # -- analysis ---------------------------------------------------------------------------
    def _latin(self, text: str) -> list[str]:
        words = _WORD_RE.findall(text.lower())
        if self.stopwords:
            words = [w for w in words if w not in ENGLISH_STOPWORDS]
        if self._stemmer is not None:
            words = self._stemmer.stemWords(words)
        return words

    def _korean_tokens(self, analysed: Iterable[Any]) -> list[str]:
        out = []
        for tok in analysed:
            if tok.tag.startswith(_KIWI_KEEP) and has_hangul(tok.form) or tok.tag == "SH":
                out.append(tok.form)
        return out

    def __call__(self, text: str) -> list[str]:
        tokens = self._latin(text)
        if self.korean == "kiwi" and has_hangul(text):
            tokens.extend(self._korean_tokens(_get_kiwi().tokenize(text)))
        elif has_hangul(text):
            # Without Kiwi, Hangul words are kept whole (whitespace-style baseline).
            tokens.extend(w for w in re.findall(r"\w+", text.lower()) if has_hangul(w))
        return tokens

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        """Batch form of ``__call__``."""
        result = [self._latin(t) for t in texts]
        korean_idx = [i for i, t in enumerate(texts) if has_hangul(t)]
        if korean_idx:
            if self.korean == "kiwi":
                kiwi = _get_kiwi()
                for i in korean_idx:
                    result[i].extend(self._korean_tokens(kiwi.tokenize(texts[i])))
            else:
                for i in korean_idx:
                    result[i].extend(w for w in re.findall(r"\w+", texts[i].lower()) if has_hangul(w))
        return result
