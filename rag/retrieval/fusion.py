"""Rank fusion: pure functions over ranked lists (ids best-first) or score maps.

* Reciprocal-rank fusion (Cormack et al. 2009): ``sum_i w_i / (k + rank_i)``, ranks from 1.
* Convex (weighted) fusion of normalised scores: ``sum_i w_i * norm_i(score)``, where a
  candidate missing from a list gets that list's minimum normalised value (it ranked below
  everything the list returned).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def rrf(rankings: Sequence[Sequence[K]], k: float = 60.0, weights: Sequence[float] | None = None) -> dict[K, float]:
    """Reciprocal-rank fusion scores of every id in any ranking."""
    weights = weights or [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    fused: dict[K, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + w / (k + rank)
    return fused


def normalize(scores: Mapping[K, float], method: str = "minmax") -> dict[K, float]:
    """Min-max to [0, 1] or z-score. A constant list maps to 1.0 (minmax) or 0.0 (zscore)."""
    if not scores:
        return {}
    values = list(scores.values())
    if method == "minmax":
        lo, hi = min(values), max(values)
        if hi == lo:
            return {key: 1.0 for key in scores}
        return {key: (v - lo) / (hi - lo) for key, v in scores.items()}
    if method == "zscore":
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        if std == 0:
            return {key: 0.0 for key in scores}
        return {key: (v - mean) / std for key, v in scores.items()}
    raise ValueError(f"unknown normalisation {method!r}")


def convex(score_lists: Sequence[Mapping[K, float]], weights: Sequence[float], method: str = "minmax"
           ) -> dict[K, float]:
    """Weighted sum of normalised scores over the union of candidates."""
    if len(weights) != len(score_lists):
        raise ValueError("one weight per score list")
    normed = [normalize(s, method) for s in score_lists]
    floors = [min(n.values()) if n else 0.0 for n in normed]
    keys: dict[K, None] = {}
    for s in score_lists:
        keys.update(dict.fromkeys(s))
    return {key: sum(w * n.get(key, floor) for n, w, floor in zip(normed, weights, floors)) for key in keys}


def ranked(scores: Mapping[K, float]) -> list[K]:
    """Ids by descending score (ties keep first-seen order)."""
    return sorted(scores, key=lambda key: -scores[key])
