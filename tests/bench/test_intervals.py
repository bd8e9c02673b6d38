"""The bootstrap band that the insight figures are compared with targets by."""

from __future__ import annotations

import pytest

from bench.intervals import macro_f1_difference_interval, macro_recall_interval

CLASSES = ("negative", "neutral", "positive")


def _answers(per_class: int, right: int) -> tuple[list[str], list[str]]:
    """`per_class` tweets of each class, the first `right` of each answered right and the
    others as the next class: every class's recall is right / per_class."""
    gold: list[str] = []
    predicted: list[str] = []
    for k, label in enumerate(CLASSES):
        gold += [label] * per_class
        predicted += [label] * right + [CLASSES[(k + 1) % 3]] * (per_class - right)
    return gold, predicted


def test_all_right_is_one_whatever_the_resample() -> None:
    gold, predicted = _answers(50, 50)
    assert macro_recall_interval(gold, predicted) == (1.0, 1.0)


def test_the_band_holds_the_figure_and_narrows_with_more_tweets() -> None:
    small = macro_recall_interval(*_answers(100, 60))
    large = macro_recall_interval(*_answers(10_000, 6_000))
    for low, high in (small, large):
        assert low < 0.6 < high
    assert small[1] - small[0] > 0.08  # about 4 standard errors of sqrt(.24 / 300)
    assert large[1] - large[0] < 0.015


def test_the_same_seed_gives_the_same_band_and_another_seed_another() -> None:
    gold, predicted = _answers(200, 130)
    assert macro_recall_interval(gold, predicted) == macro_recall_interval(gold, predicted)
    assert macro_recall_interval(gold, predicted, seed=1) != macro_recall_interval(gold, predicted)


def test_a_label_outside_the_gold_classes_is_a_miss() -> None:
    gold, _ = _answers(100, 100)
    predicted = ["mixed"] * len(gold)
    assert macro_recall_interval(gold, predicted) == (0.0, 0.0)


@pytest.mark.parametrize(("gold", "predicted"), [([], []), (["positive"], [])])
def test_unequal_or_empty_inputs_are_refused(gold: list[str], predicted: list[str]) -> None:
    with pytest.raises(ValueError, match="equally long"):
        macro_recall_interval(gold, predicted)


def test_a_system_against_itself_differs_by_nothing_and_against_all_wrong_by_one() -> None:
    gold, predicted = _answers(100, 70)
    assert macro_f1_difference_interval(gold, predicted, predicted) == (0.0, 0.0)
    all_wrong = ["mixed"] * len(gold)
    assert macro_f1_difference_interval(gold, gold, all_wrong) == (1.0, 1.0)


def test_the_paired_band_holds_the_difference_of_the_macro_f1s() -> None:
    # Class a: 1 right of 2, 1 answered: F1 2/3; class b: 2 of 2, 3 answered: F1 4/5.
    gold = ["a", "a", "b", "b"] * 2500
    predicted = ["a", "b", "b", "b"] * 2500
    low, high = macro_f1_difference_interval(gold, gold, predicted)
    assert low < 1 - (2 / 3 + 4 / 5) / 2 < high
    assert high - low < 0.03
    assert macro_f1_difference_interval(gold, predicted, gold) == (-high, -low)


def test_the_difference_refuses_answers_of_another_length() -> None:
    with pytest.raises(ValueError, match="equally long"):
        macro_f1_difference_interval(["a", "b"], ["a", "b"], ["a"])
