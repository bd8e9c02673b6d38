"""Trains the sentiment and category models shipped in server/analytics/insights/models/.

    python -m bench.insights_train            # both, about 2 minutes on one core

Data (bench/insights_data.py, all public, pinned by commit):
- sentiment: SemEval-2013-2016 Task 4A English gold tweets (the TweetEval train set) and the
  XLM-T (UMSAB) train splits in 8 languages. Hyper-parameters were picked on TweetEval's
  validation split, which then joins the final fit; TweetEval's test set (SemEval-2017) and
  XLM-T's test splits are only measured (bench/insights.py), and any training tweet whose
  text is in them is dropped.
- category: TweetTopicXL's train and validation splits (800 human-labelled tweets in en, es,
  el, ja) plus tweets of the sentiment sets above and TweetEval's emoji and offensive train
  sets, weakly labelled when they hit the keywords of exactly one category
  (server/analytics/insights/keywords.py). Alpha and HUMAN_WEIGHT were picked by 5-fold
  cross-validation over the 800 human-labelled tweets. TweetTopicXL's test split is only
  measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import SGDClassifier
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from bench import insights_data as data
from server.analytics.insights.features import FeatureSpec, Featurizer, SparseRows, clean
from server.analytics.insights.keywords import KeywordMatcher
from server.analytics.insights.linear import LinearModel
from server.analytics.insights.models import MODEL_DIR
from server.analytics.insights.taxonomy import CATEGORIES, FROM_TWEETTOPIC

SENTIMENT_SPEC = FeatureSpec(word_bits=18, char_bits=18, lexicon=True)
CATEGORY_SPEC = FeatureSpec(word_bits=17, char_bits=16, lexicon=False)
HUMAN_WEIGHT = 20.0  # one human-labelled tweet counts as this many weakly labelled ones


def _key(text: str) -> str:
    return clean(text).lower()


def _held_out() -> set[str]:
    held = {_key(t) for t, _ in data.tweeteval_sentiment("test")}
    held |= {_key(t) for t, _, _ in data.xlmt_sentiment("test")}
    held |= {_key(t) for t, _, _ in data.topicxl("test")}
    return held


def to_csr(features: SparseRows) -> sp.csr_matrix:
    """The serving featuriser's output as the sparse matrix scikit-learn trains on."""
    return sp.csr_matrix((features.values, (features.rows, features.columns)), shape=features.shape)


def _fit(
    featurizer: Featurizer,
    texts: Sequence[str],
    labels: Sequence[str],
    weights: Sequence[float] | None,
    alpha: float,
    class_weight: str | None,
) -> LinearModel:
    model = SGDClassifier(
        loss="log_loss",
        alpha=alpha,
        class_weight=class_weight,
        max_iter=20,
        tol=None,
        average=True,
        random_state=0,
    )
    model.fit(to_csr(featurizer.transform(texts)), np.asarray(labels), sample_weight=weights)
    return LinearModel(
        classes=tuple(str(c) for c in model.classes_),
        spec=featurizer.spec,
        weights=np.ascontiguousarray(model.coef_.T.astype(np.float32)),
        intercept=model.intercept_.astype(np.float32),
    )


def train_sentiment(held: set[str]) -> LinearModel:
    rows = data.semeval_train() + [(t, y) for t, y, _ in data.xlmt_sentiment("train")]
    # TweetEval's validation split chose alpha and averaging; the final fit learns from it too.
    rows += data.tweeteval_sentiment("val")
    unique = {_key(t): (t, y) for t, y in rows if _key(t) not in held}
    rows = list(unique.values())
    print(f"sentiment: {len(rows)} training tweets")
    featurizer = Featurizer(SENTIMENT_SPEC, SentimentIntensityAnalyzer())
    return _fit(
        featurizer,
        [t for t, _ in rows],
        [y for _, y in rows],
        None,
        alpha=1e-5,
        class_weight="balanced",
    )


def _unlabelled_pool() -> list[str]:
    pool = [t for t, _ in data.semeval_train()]
    pool += [t for t, _, _ in data.xlmt_sentiment("train")]
    for task in ("emoji", "offensive"):
        pool += data.read(data.TWEETEVAL, f"datasets/{task}/train_text.txt").splitlines()
    return pool


def train_category(held: set[str]) -> LinearModel:
    texts: list[str] = []
    labels: list[str] = []
    weights: list[float] = []
    for split in ("train", "validation"):
        for text, topics, _ in data.topicxl(split):
            mapped = sorted({FROM_TWEETTOPIC[t] for t in topics})
            for category in mapped:  # a tweet of k topics: k rows of weight 1/k
                texts.append(text)
                labels.append(category)
                weights.append(HUMAN_WEIGHT / len(mapped))
    human = len(texts)
    matcher = KeywordMatcher()
    seen: set[str] = set()
    for text in _unlabelled_pool():
        key = _key(text)
        if key in held or key in seen:
            continue
        seen.add(key)
        votes = matcher.votes(text)
        if len(votes) == 1:
            texts.append(text)
            labels.append(next(iter(votes)))
            weights.append(1.0)
    print(f"category: {human} human-labelled rows, {len(texts) - human} weakly labelled tweets")
    missing = set(CATEGORIES) - set(labels)
    if missing:
        raise SystemExit(f"no training rows for {sorted(missing)}")
    featurizer = Featurizer(CATEGORY_SPEC, None)
    model = _fit(featurizer, texts, labels, weights, alpha=5e-5, class_weight=None)
    order = [model.classes.index(c) for c in CATEGORIES]
    return LinearModel(
        classes=CATEGORIES,
        spec=model.spec,
        weights=np.ascontiguousarray(model.weights[:, order]),
        intercept=model.intercept[order],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--only", choices=("sentiment", "category"))
    args = parser.parse_args(argv)
    try:
        held = _held_out()
        for name, train in (("sentiment", train_sentiment), ("category", train_category)):
            if args.only not in (None, name):
                continue
            started = time.perf_counter()
            model = train(held)
            path = args.out / f"{name}.npz"
            model.save(path)
            size, took = path.stat().st_size / 1e6, time.perf_counter() - started
            print(f"{name}: {path} ({size:.1f} MB, {took:.0f} s)")
    except data.DataUnavailable as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
