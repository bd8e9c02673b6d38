"""Post text → the sparse features the sentiment and category models were trained on.

Training (`bench/insights_train.py`) and serving call these same functions, so a model never
sees text cleaned differently from what it learned on. Hashing keeps no vocabulary in the
artifact: a model file is just its weights.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

_URL = re.compile(r"(?:https?://|www\.)\S+|\{\{URL\}\}", re.IGNORECASE)
_MENTION = re.compile(r"@\w+|\{\{USERNAME\}\}|\{@[^@]*@\}")
_REPEAT = re.compile(r"(.)\1{2,}")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# A letter of any script: what decides whether a post has language at all.
_LETTER = re.compile(r"[^\W\d_]")


def unescape(text: str) -> str:
    """Literal `\\uXXXX` escapes (as some tweet dumps hold them) decoded; a surrogate that pairs
    with no other, decoded or not, becomes U+FFFD instead of breaking UTF-8 encoders later."""
    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean(text: str) -> str:
    """Links and handles become placeholders, runs of one character are cut to two."""
    text = unescape(text)
    text = _URL.sub(" httpurl ", text)
    text = _MENTION.sub(" @user ", text)
    text = _REPEAT.sub(r"\1\1", text)
    return " ".join(text.split())


def letters_only(text: str) -> str:
    """What language identification reads: no links, handles, hashtag marks, digits or emoji."""
    text = _URL.sub(" ", unescape(text))
    text = _MENTION.sub(" ", text).replace("#", " ")
    return " ".join("".join(c if _LETTER.match(c) or c in " '-" else " " for c in text).split())


def has_letters(text: str) -> bool:
    return _LETTER.search(text) is not None


@dataclass(frozen=True)
class FeatureSpec:
    """How a model's input columns were made; saved beside its weights and checked on load."""

    word_bits: int
    char_bits: int
    lexicon: bool  # four VADER columns appended (sentiment only)

    @property
    def width(self) -> int:
        return int(2**self.word_bits + 2**self.char_bits + (4 if self.lexicon else 0))


class Featurizer:
    """Stateless hashing vectorizers (word 1-2-grams, character 2-4-grams within words)."""

    def __init__(self, spec: FeatureSpec, vader: SentimentIntensityAnalyzer | None) -> None:
        if spec.lexicon and vader is None:
            raise ValueError("a lexicon feature spec needs the VADER analyzer")
        self.spec = spec
        self._vader = vader
        self._words = HashingVectorizer(
            n_features=2**spec.word_bits,
            ngram_range=(1, 2),
            token_pattern=r"(?u)[#@]?\b\w+\b|[^\w\s]{1,3}",
            alternate_sign=False,
            norm="l2",
            dtype=np.float32,
        )
        self._chars = HashingVectorizer(
            n_features=2**spec.char_bits,
            analyzer="char_wb",
            ngram_range=(2, 4),
            alternate_sign=False,
            norm="l2",
            dtype=np.float32,
        )

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        cleaned = [clean(t).lower() for t in texts]
        blocks = [self._words.transform(cleaned), self._chars.transform(cleaned)]
        if self.spec.lexicon:
            assert self._vader is not None
            blocks.append(sp.csr_matrix(self.lexicon(texts)))
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def lexicon(self, texts: Sequence[str]) -> np.ndarray:
        """VADER's compound, positive, negative and neutral scores, one row per text."""
        assert self._vader is not None
        rows = []
        for text in texts:
            s = self._vader.polarity_scores(clean(text))
            rows.append((s["compound"], s["pos"], s["neg"], s["neu"]))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), 4)
