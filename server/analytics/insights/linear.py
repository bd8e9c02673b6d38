"""A linear classifier's weights, int8-quantised per class, saved and loaded as one .npz file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.analytics.insights.features import FeatureSpec, SparseRows


@dataclass(frozen=True)
class LinearModel:
    classes: tuple[str, ...]
    spec: FeatureSpec
    weights: np.ndarray  # (features, classes) float32, dequantised once at load
    intercept: np.ndarray  # (classes,)

    def scores(self, features: SparseRows) -> np.ndarray:
        """The class scores (log-probabilities up to a constant), one row per input row."""
        result: np.ndarray = features.dot(self.weights) + self.intercept
        return result

    def probabilities(self, features: SparseRows, scores: np.ndarray | None = None) -> np.ndarray:
        """Softmax over the classes, one row per input row (of `scores` if given)."""
        scores = (self.scores(features) if scores is None else scores).copy()
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        result: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
        return result

    def save(self, path: Path) -> None:
        scale = np.abs(self.weights).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        quantised = np.round(self.weights / scale).astype(np.int8)
        np.savez_compressed(
            path,
            classes=np.asarray(self.classes),
            # The fourth number only for a model with the built lexicon: files of models
            # without it stay as they were before it existed.
            spec=np.asarray(
                [self.spec.word_bits, self.spec.char_bits, int(self.spec.lexicon)]
                + ([1] if self.spec.auto_lexicon else [])
            ),
            quantised=quantised,
            scale=scale.astype(np.float32),
            intercept=self.intercept.astype(np.float32),
        )

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        with np.load(path, allow_pickle=False) as saved:
            numbers = [int(x) for x in saved["spec"]]
            numbers += [0] * (4 - len(numbers))  # saved before the built lexicon: three
            word_bits, char_bits, lexicon, auto = numbers
            spec = FeatureSpec(word_bits, char_bits, bool(lexicon), auto_lexicon=bool(auto))
            weights = saved["quantised"].astype(np.float32) * saved["scale"]
            if weights.shape[0] != spec.width:
                raise ValueError(f"{path.name}: {weights.shape[0]} weights for {spec.width} inputs")
            return cls(
                classes=tuple(str(c) for c in saved["classes"]),
                spec=spec,
                weights=np.ascontiguousarray(weights),
                intercept=saved["intercept"].astype(np.float32),
            )
