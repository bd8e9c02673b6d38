"""Post text → the sparse features the sentiment and category models were trained on.

Training (`bench/insights_train.py`) and serving call these same functions, so a model never
sees text cleaned differently from what it learned on. Hashing keeps no vocabulary in the
artifact: a model file is just its weights.

The hashing is scikit-learn's `HashingVectorizer` (signed 32-bit MurmurHash3 of the UTF-8
n-gram, column `abs(hash) % n_features`, counts, L2 norm per block), redone here with numpy and
`mmh3` so that serving needs neither scikit-learn nor scipy; the weights in models/ were
trained on scikit-learn's output, and tests/analytics/test_insights_models.py checks that the
two agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import mmh3
import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

if TYPE_CHECKING:
    from server.analytics.insights.lexicon import Lexicon

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


# Columns of the automatically built lexicon's features (lexicon.py).
AUTO_LEXICON_WIDTH = 12


@dataclass(frozen=True)
class FeatureSpec:
    """How a model's input columns were made; saved beside its weights and checked on load."""

    word_bits: int
    char_bits: int
    lexicon: bool  # four VADER columns appended (sentiment only)
    auto_lexicon: bool = False  # then AUTO_LEXICON_WIDTH columns of models/lexicon.npz

    @property
    def width(self) -> int:
        dense = (4 if self.lexicon else 0) + (AUTO_LEXICON_WIDTH if self.auto_lexicon else 0)
        return int(2**self.word_bits + 2**self.char_bits + dense)


@dataclass(frozen=True)
class SparseRows:
    """A batch's features as (row, column, value) triples, no (row, column) pair twice."""

    rows: np.ndarray  # int64
    columns: np.ndarray  # int64
    values: np.ndarray  # float32
    shape: tuple[int, int]

    def dot(self, weights: np.ndarray) -> np.ndarray:
        """This matrix times `weights` (columns x classes): one row of scores per input row."""
        n, classes = self.shape[0], weights.shape[1]
        products = weights[self.columns] * self.values[:, None]
        cells = (self.rows * classes)[:, None] + np.arange(classes)
        summed = np.bincount(cells.ravel(), weights=products.ravel(), minlength=n * classes)
        result: np.ndarray = summed.reshape(n, classes).astype(np.float32)
        return result


# scikit-learn's default token pattern for the word analyzer, widened to keep hashtags,
# handles and short runs of punctuation (emoticons, "!!", "?!").
_TOKEN = re.compile(r"(?u)[#@]?\b\w+\b|[^\w\s]{1,3}")
_SPACES = re.compile(r"\s\s+")


def word_ngrams(text: str) -> list[str]:
    """Word 1- and 2-grams, as scikit-learn's word analyzer with ngram_range=(1, 2) makes them."""
    tokens: list[str] = _TOKEN.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in pairwise(tokens)]


def char_wb_ngrams(text: str, low: int = 2, high: int = 4) -> list[str]:
    """Character `low`..`high`-grams inside space-padded words, as scikit-learn's `char_wb`
    analyzer makes them (a word shorter than an n-gram gives itself once, padded)."""
    grams: list[str] = []
    append = grams.append
    for word in _SPACES.sub(" ", text.lower()).split():
        padded = f" {word} "
        length = len(padded)
        for n in range(low, high + 1):
            if length <= n:
                append(padded)
                break
            for start in range(length - n + 1):
                append(padded[start : start + n])
    return grams


def hashed_counts(grams: Sequence[list[str]], bits: int) -> tuple[np.ndarray, ...]:
    """(rows, columns, values): each document's n-grams hashed into 2**bits columns, counted,
    and each row scaled to unit L2 norm (HashingVectorizer, alternate_sign=False, norm="l2")."""
    width = 2**bits
    lengths = np.fromiter((len(g) for g in grams), dtype=np.int64, count=len(grams))
    hashes = np.fromiter(
        (mmh3.hash(gram) for doc in grams for gram in doc), dtype=np.int64, count=lengths.sum()
    )
    # abs(-2**31) % width in int64 is what scikit-learn's special case for it gives.
    keys = np.repeat(np.arange(len(grams), dtype=np.int64), lengths) * width
    keys += np.abs(hashes) % width
    unique, counts = np.unique(keys, return_counts=True)
    rows, columns = np.divmod(unique, width)
    counts = counts.astype(np.float64)
    norms = np.sqrt(np.bincount(rows, weights=counts * counts, minlength=len(grams)))
    return rows, columns, (counts / norms[rows]).astype(np.float32)


class Featurizer:
    """Stateless hashing features (word 1-2-grams, character 2-4-grams within words) and,
    for sentiment, VADER's four scores and the built lexicon's columns: one row per text,
    `spec.width` columns."""

    def __init__(
        self,
        spec: FeatureSpec,
        vader: SentimentIntensityAnalyzer | None,
        auto_lexicon: Lexicon | None = None,
    ) -> None:
        if spec.lexicon and vader is None:
            raise ValueError("a lexicon feature spec needs the VADER analyzer")
        if spec.auto_lexicon and auto_lexicon is None:
            raise ValueError("an auto_lexicon feature spec needs the built lexicon")
        self.spec = spec
        self._vader = vader
        self._auto_lexicon = auto_lexicon

    def transform(self, texts: Sequence[str]) -> SparseRows:
        cleaned = [clean(t).lower() for t in texts]  # lowercased twice, as in training
        words = hashed_counts([word_ngrams(t) for t in cleaned], self.spec.word_bits)
        chars = hashed_counts([char_wb_ngrams(t) for t in cleaned], self.spec.char_bits)
        char_offset = 2**self.spec.word_bits
        blocks = [words, (chars[0], chars[1] + char_offset, chars[2])]
        offset = char_offset + 2**self.spec.char_bits
        dense = []
        if self.spec.lexicon:
            dense.append(self.lexicon(texts))
        if self.spec.auto_lexicon:
            assert self._auto_lexicon is not None
            dense.append(self._auto_lexicon.features(texts))
        if dense:
            stacked = np.hstack(dense)
            rows, columns = np.nonzero(stacked)
            blocks.append((rows.astype(np.int64), columns + offset, stacked[rows, columns]))
        return SparseRows(
            rows=np.concatenate([b[0] for b in blocks]),
            columns=np.concatenate([b[1] for b in blocks]),
            values=np.concatenate([b[2] for b in blocks]).astype(np.float32),
            shape=(len(texts), self.spec.width),
        )

    def lexicon(self, texts: Sequence[str]) -> np.ndarray:
        """VADER's compound, positive, negative and neutral scores, one row per text."""
        assert self._vader is not None
        rows = []
        for text in texts:
            s = self._vader.polarity_scores(clean(text))
            rows.append((s["compound"], s["pos"], s["neg"], s["neu"]))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), 4)
