"""A small non-linear combiner stacked on the linear sentiment model (the fifth round of
docs/ANALYTICS_MODELS.md): one hidden layer of ReLU units over the linear model's three class
scores, VADER's four scores and, for some candidates, a few surface features of the post;
softmax over the classes. Its weights are a few hundred floats in `sentiment_stack.npz`,
trained by `bench/insights_train.py` with scikit-learn's MLPClassifier and applied here with
numpy only. With `english_only`, it answers for posts identified as English only; the others
keep the linear model's answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.analytics.insights.features import FeatureSpec, SparseRows, clean

# What each input set holds, in column order: the linear model's scores ("logits") or their
# softmax ("probs"), VADER's compound, pos, neg and neu, and SURFACE_WIDTH surface features.
INPUTS = ("logits+vader", "logits+vader+surface", "probs+vader+surface")
SURFACE_WIDTH = 6
_WORD = re.compile(r"\w+")
_SYMBOLS = 0x2100  # letterlike symbols, arrows, dingbats, emoji and beyond


def surface_features(texts: Sequence[str]) -> np.ndarray:
    """Per post: log(1 + words), log(1 + "!"), log(1 + "?"), the share of upper-case letters,
    log(1 + emoji and symbols), log(1 + "#"); of the cleaned text."""
    rows = []
    for text in texts:
        cleaned = clean(text)
        letters = [c for c in cleaned if c.isalpha()]
        upper = sum(c.isupper() for c in letters) / max(1, len(letters))
        rows.append(
            (
                np.log1p(len(_WORD.findall(cleaned))),
                np.log1p(cleaned.count("!")),
                np.log1p(cleaned.count("?")),
                upper,
                np.log1p(sum(ord(c) >= _SYMBOLS for c in cleaned)),
                np.log1p(cleaned.count("#")),
            )
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), SURFACE_WIDTH)


def vader_columns(features: SparseRows, spec: FeatureSpec) -> np.ndarray:
    """VADER's four scores, as the linear model's featuriser appended them (its columns after
    the hashed blocks), back as a dense (rows, 4) array: VADER is not run twice."""
    if not spec.lexicon:
        raise ValueError("the linear model has no VADER columns")
    offset = 2**spec.word_bits + 2**spec.char_bits
    dense = np.zeros((features.shape[0], 4), dtype=np.float32)
    mine = (features.columns >= offset) & (features.columns < offset + 4)
    dense[features.rows[mine], features.columns[mine] - offset] = features.values[mine]
    return dense


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return result


def stack_inputs(
    inputs: str, scores: np.ndarray, vader: np.ndarray, texts: Sequence[str]
) -> np.ndarray:
    """The combiner's input rows: `scores` are the linear model's (rows, 3) class scores."""
    if inputs not in INPUTS:
        raise ValueError(f"unknown stack inputs {inputs!r}")
    first = softmax(scores) if inputs.startswith("probs") else scores
    parts = [first.astype(np.float32), vader.astype(np.float32)]
    if inputs.endswith("+surface"):
        parts.append(surface_features(texts))
    return np.hstack(parts)


@dataclass(frozen=True)
class StackedModel:
    classes: tuple[str, ...]
    inputs: str  # one of INPUTS
    english_only: bool
    hidden: np.ndarray  # (inputs, units) float32
    hidden_bias: np.ndarray  # (units,)
    output: np.ndarray  # (units, classes)
    output_bias: np.ndarray  # (classes,)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Softmax over the classes of the one-hidden-layer ReLU network, one row per input row
        (as scikit-learn's MLPClassifier.predict_proba)."""
        hidden = np.maximum(x.astype(np.float32) @ self.hidden + self.hidden_bias, 0.0)
        return softmax(hidden @ self.output + self.output_bias)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            classes=np.asarray(self.classes),
            inputs=np.asarray(self.inputs),
            english_only=np.asarray(int(self.english_only)),
            hidden=self.hidden.astype(np.float32),
            hidden_bias=self.hidden_bias.astype(np.float32),
            output=self.output.astype(np.float32),
            output_bias=self.output_bias.astype(np.float32),
        )

    @classmethod
    def load(cls, path: Path) -> StackedModel:
        with np.load(path, allow_pickle=False) as saved:
            model = cls(
                classes=tuple(str(c) for c in saved["classes"]),
                inputs=str(saved["inputs"]),
                english_only=bool(int(saved["english_only"])),
                hidden=saved["hidden"].astype(np.float32),
                hidden_bias=saved["hidden_bias"].astype(np.float32),
                output=saved["output"].astype(np.float32),
                output_bias=saved["output_bias"].astype(np.float32),
            )
        width = 7 + (SURFACE_WIDTH if model.inputs.endswith("+surface") else 0)
        if model.inputs not in INPUTS or model.hidden.shape[0] != width:
            raise ValueError(f"{path.name}: {model.hidden.shape[0]} inputs for {model.inputs!r}")
        if model.output.shape != (model.hidden.shape[1], len(model.classes)):
            raise ValueError(f"{path.name}: output weights {model.output.shape}")
        return model
