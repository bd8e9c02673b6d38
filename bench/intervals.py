"""How far a test set's score could move by which tweets happened to be in it.

A macro-recall of 0.647 on 12,284 tweets is not a different answer from 0.650: the
percentile bootstrap below (resampling the tweets with replacement, the model's answers
fixed) says how wide the band of such figures is, so a target is compared with the band
and not with the third decimal. Two systems answering the same tweets are compared by the
band of their difference over the same resamples (a paired bootstrap), which is narrower
than the two bands side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _encoded(
    gold: Sequence[str], *answers: Sequence[str]
) -> tuple[int, np.ndarray, list[np.ndarray]]:
    """The gold classes as 0..k-1, and each system's answers so (-1 for a label outside
    them)."""
    if not gold or any(len(a) != len(gold) for a in answers):
        raise ValueError("gold and predicted must be equally long and not empty")
    index = {label: k for k, label in enumerate(sorted(set(gold)))}
    truth = np.fromiter((index[y] for y in gold), dtype=np.int64, count=len(gold))
    coded = [
        np.fromiter((index.get(y, -1) for y in a), dtype=np.int64, count=len(gold)) for a in answers
    ]
    return len(index), truth, coded


def _macro_f1(classes: int, truth: np.ndarray, predicted: np.ndarray) -> float:
    """Macro-F1 over the gold classes present (F1 = 2TP / (gold + predicted) per class)."""
    support = np.bincount(truth, minlength=classes)
    answered = np.bincount(predicted[predicted >= 0], minlength=classes)
    right = np.bincount(truth[truth == predicted], minlength=classes)
    present = support > 0
    return float(np.mean(2 * right[present] / (support[present] + answered[present])))


def _band(
    size: int,
    score: Callable[[np.ndarray], float],
    level: float,
    resamples: int,
    seed: int,
) -> tuple[float, float]:
    """The central `level` percentile interval of `score` over `resamples` draws of `size`
    indexes with replacement (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    scores = [score(rng.integers(0, size, size=size)) for _ in range(resamples)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def macro_f1_difference_interval(
    gold: Sequence[str],
    first: Sequence[str],
    second: Sequence[str],
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 2017,
) -> tuple[float, float]:
    """The central `level` paired percentile bootstrap interval of macro-F1(first) -
    macro-F1(second) over the gold classes: both systems scored on the same resamples."""
    classes, truth, (a, b) = _encoded(gold, first, second)

    def difference(drawn: np.ndarray) -> float:
        return _macro_f1(classes, truth[drawn], a[drawn]) - _macro_f1(
            classes, truth[drawn], b[drawn]
        )

    return _band(len(truth), difference, level, resamples, seed)


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
    classes, truth, (answers,) = _encoded(gold, predicted)
    hits = (truth == answers).astype(np.float64)

    def macro_recall(drawn: np.ndarray) -> float:
        counts = np.bincount(truth[drawn], minlength=classes)
        hit_counts = np.bincount(truth[drawn], weights=hits[drawn], minlength=classes)
        # A class no resample drew has no recall: the mean is over the classes drawn.
        present = counts > 0
        return float(np.mean(hit_counts[present] / counts[present]))

    return _band(len(truth), macro_recall, level, resamples, seed)
