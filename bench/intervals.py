"""How far a test set's score could move by which tweets happened to be in it.

A macro-recall of 0.647 on 12,284 tweets is not a different answer from 0.650: the
percentile bootstrap below (resampling the tweets with replacement, the model's answers
fixed) says how wide the band of such figures is, so a target is compared with the band
and not with the third decimal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def macro_recall_interval(
    gold: Sequence[str],
    predicted: Sequence[str],
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 2017,
) -> tuple[float, float]:
    """The central `level` percentile bootstrap interval of the macro-averaged recall over
    the gold labels (the classes of `gold`; a predicted label outside them is a miss).
    Deterministic for a given seed."""
    if len(gold) != len(predicted) or not gold:
        raise ValueError("gold and predicted must be equally long and not empty")
    labels = sorted(set(gold))
    index = {label: k for k, label in enumerate(labels)}
    truth = np.fromiter((index[y] for y in gold), dtype=np.int64, count=len(gold))
    hits = np.fromiter(
        (g == p for g, p in zip(gold, predicted, strict=True)), dtype=np.float64, count=len(gold)
    )
    rng = np.random.default_rng(seed)
    scores = np.empty(resamples)
    for r in range(resamples):
        drawn = rng.integers(0, len(truth), size=len(truth))
        counts = np.bincount(truth[drawn], minlength=len(labels))
        hit_counts = np.bincount(truth[drawn], weights=hits[drawn], minlength=len(labels))
        # A class no resample drew has no recall: the mean is over the classes drawn.
        present = counts > 0
        scores[r] = np.mean(hit_counts[present] / counts[present])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)
