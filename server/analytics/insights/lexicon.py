"""An automatically built sentiment lexicon, as a few dense features (NRC-Canada style).

Mohammad, Kiritchenko & Zhu (SemEval 2013) scored each word and word pair by how much more
often it occurs in tweets marked positive by an emoticon than in tweets marked negative:
score(t) = PMI(t, positive) - PMI(t, negative). `bench/insights_train.py` builds such a
lexicon from pinned emoticon-labelled tweets (Sentiment140); here it is read and turned into
`WIDTH` columns per post: for unigrams and for bigrams, the count of positive and of negative
terms, the sum, the maximum, the minimum and the last term's score. A term after a negation
word and before the next punctuation is looked up as `term_neg`, a separate entry learnt from
negated contexts, since "not good" is not the opposite of "good" in tweets.

The artifact keeps no strings: each term's signed 32-bit MurmurHash3 and its score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import mmh3
import numpy as np

from server.analytics.insights.features import AUTO_LEXICON_WIDTH as WIDTH
from server.analytics.insights.features import clean

# The serving word tokenizer's pattern (features._TOKEN): words, hashtags, handles, punctuation.
_TOKEN = re.compile(r"(?u)[#@]?\b\w+\b|[^\w\s]{1,3}")
_CLAUSE_END = re.compile(r"^[.,:;!?]")
_NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "nothing",
        "nobody",
        "none",
        "nor",
        "neither",
        "nowhere",
        "cannot",
        "cant",
        "dont",
        "wont",
        "isnt",
        "arent",
        "doesnt",
        "didnt",
        "wasnt",
        "werent",
        "shouldnt",
        "wouldnt",
        "couldnt",
        "havent",
        "hasnt",
        "hadnt",
        "aint",
    ]
)
# WIDTH columns: per n-gram order, positive count, negative count, sum, max, min, last score.
# Dense columns scaled to about the range of the L2-normalised hashed blocks (a typical tweet
# has a few lexicon hits of score -3..3); the trainer may multiply it, and saves the result.
BASE_SCALE = np.asarray([0.1, 0.1, 0.1, 0.2, 0.2, 0.2] * 2, dtype=np.float32)


def terms(text: str) -> tuple[list[str], list[str]]:
    """(unigrams, bigrams) of a post as the lexicon knows them: cleaned, lower-cased, and
    marked `_neg` between a negation word and the next punctuation."""
    tokens: list[str] = _TOKEN.findall(clean(text).lower())
    marked: list[str] = []
    negated = False
    for k, token in enumerate(tokens):
        if _CLAUSE_END.match(token):
            negated = False
            marked.append(token)
            continue
        marked.append(f"{token}_neg" if negated else token)
        # "don't" is tokenised as don ' t: the t closes a negation word.
        if token in _NEGATIONS or (token == "t" and k > 0 and tokens[k - 1] == "'"):
            negated = True
    return marked, [f"{a} {b}" for a, b in pairwise(marked)]


@dataclass(frozen=True)
class Lexicon:
    """Term hash -> score, and each column's scale; read from `lexicon.npz`."""

    scores: dict[int, float]
    scale: np.ndarray  # (WIDTH,) float32

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        with np.load(path, allow_pickle=False) as saved:
            hashes, values = saved["hashes"], saved["scores"].astype(np.float32)
            scale = saved["scale"].astype(np.float32)
        if scale.shape != (WIDTH,):
            raise ValueError(f"{path.name}: {scale.shape} scales for {WIDTH} columns")
        return cls(dict(zip(hashes.tolist(), values.tolist(), strict=True)), scale)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            hashes=np.fromiter(self.scores, dtype=np.int32, count=len(self.scores)),
            scores=np.fromiter(self.scores.values(), dtype=np.float16, count=len(self.scores)),
            scale=self.scale.astype(np.float32),
        )

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """`WIDTH` scaled columns per text (zeros for a text with no known term)."""
        rows = np.zeros((len(texts), WIDTH), dtype=np.float32)
        get = self.scores.get
        for i, text in enumerate(texts):
            for j, grams in enumerate(terms(text)):
                found = [s for s in (get(mmh3.hash(g)) for g in grams) if s is not None]
                if found:
                    rows[i, 6 * j : 6 * j + 6] = (
                        sum(s > 0 for s in found),
                        sum(s < 0 for s in found),
                        sum(found),
                        max(found),
                        min(found),
                        found[-1],
                    )
        scaled: np.ndarray = rows * self.scale
        return scaled
