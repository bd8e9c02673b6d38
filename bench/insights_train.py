"""Trains the sentiment and category models shipped in server/analytics/insights/models/.

    python -m bench.insights_train                    # both, about 3 minutes on one core
    python -m bench.insights_train --select-sentiment # the sentiment candidates compared
    python -m bench.insights_train --select-category  # how KEYWORD_WEIGHT was chosen

Data (bench/insights_data.py, all public, pinned by commit):
- sentiment: SemEval-2013-2016 Task 4A English gold tweets (the TweetEval train set), TweetEval's
  validation split and the XLM-T (UMSAB) train splits in 8 languages; a multinomial logistic
  regression with balanced classes. An NB-SVM with a per-class bias was the other candidate
  (`--select-sentiment`, docs/ANALYTICS_MODELS.md). TweetEval's test set (SemEval-2017) and
  XLM-T's test splits are only measured (bench/insights.py), and any training tweet whose text
  is in them is dropped.
- category: TweetTopicXL's train and validation splits (800 human-labelled tweets in en, es,
  el, ja) plus tweets of the sentiment sets above and TweetEval's emoji and offensive train
  sets, weakly labelled when they hit the keywords of exactly one category
  (server/analytics/insights/keywords.py). Alpha and HUMAN_WEIGHT were picked by 5-fold
  cross-validation over the 800 human-labelled tweets, and so were the weight of a keyword
  hit against the model's log-probability and the correction for the weak labels' class
  shares (`--select-category`). TweetTopicXL's test split is only measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
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


def _fit_sgd(
    features: sp.csr_matrix,
    labels: np.ndarray,
    weights: Sequence[float] | None,
    alpha: float,
    class_weight: str | None,
) -> SGDClassifier:
    model = SGDClassifier(
        loss="log_loss",
        alpha=alpha,
        class_weight=class_weight,
        max_iter=20,
        tol=None,
        average=True,
        random_state=0,
    )
    return model.fit(features, labels, sample_weight=weights)


def _fit(
    featurizer: Featurizer,
    texts: Sequence[str],
    labels: Sequence[str],
    weights: Sequence[float] | None,
    alpha: float,
    class_weight: str | None,
) -> LinearModel:
    features = to_csr(featurizer.transform(texts))
    model = _fit_sgd(features, np.asarray(labels), weights, alpha, class_weight)
    return LinearModel(
        classes=tuple(str(c) for c in model.classes_),
        spec=featurizer.spec,
        weights=np.ascontiguousarray(model.coef_.T.astype(np.float32)),
        intercept=model.intercept_.astype(np.float32),
    )


SENTIMENTS = ("negative", "neutral", "positive")
SENTIMENT_ALPHA = 1e-5  # SGD's L2 penalty
NB_SMOOTHING = 1.0  # the NB-SVM candidate's add-k smoothing of its naive-Bayes ratios
SENTIMENT_DEV = "twitter-2016test-A.txt"


def _sentiment_rows(
    held: set[str], without: AbstractSet[str] = frozenset()
) -> list[tuple[str, str]]:
    """Training tweets: no test tweet, no tweet whose key is in `without`, no duplicate."""
    rows = data.semeval_train() + [(t, y) for t, y, _ in data.xlmt_sentiment("train")]
    rows += data.tweeteval_sentiment("val")
    unique = {_key(t): (t, y) for t, y in rows if _key(t) not in held and _loose(t) not in without}
    return list(unique.values())


def _loose(text: str) -> str:
    """A tweet's letters and digits only: the same tweet redistributed with other escapes,
    links or handles has the same loose key."""
    key = _key(text).replace("httpurl", "").replace("@user", "").replace("http", "")
    return "".join(c for c in key if c.isalnum())


def _nb_svm(features: sp.csr_matrix, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a logistic regression over the features scaled by their naive-Bayes
    log-count ratio (class against the rest); returns (weights, intercept) for the unscaled
    features, ready for LinearModel."""
    present = features.copy()
    present.data[:] = 1.0
    weights = np.zeros((features.shape[1], len(SENTIMENTS)), dtype=np.float32)
    intercept = np.zeros(len(SENTIMENTS), dtype=np.float32)
    for k, name in enumerate(SENTIMENTS):
        mine = labels == name
        p = NB_SMOOTHING + np.asarray(present[mine].sum(axis=0)).ravel()
        q = NB_SMOOTHING + np.asarray(present[~mine].sum(axis=0)).ravel()
        ratio = np.log((p / p.sum()) / (q / q.sum()))
        ratio[-4:] = 1.0  # VADER's scores are dense and signed: left as they are
        scaled = (features @ sp.diags(ratio.astype(np.float32))).tocsr()
        model = SGDClassifier(
            loss="log_loss",
            alpha=SENTIMENT_ALPHA,
            class_weight="balanced",
            max_iter=20,
            tol=None,
            average=True,
            random_state=0,
        )
        model.fit(scaled, mine)
        weights[:, k] = model.coef_[0] * ratio
        intercept[k] = model.intercept_[0]
    return weights, intercept


def train_sentiment(held: set[str]) -> LinearModel:
    rows = _sentiment_rows(held)
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


def select_sentiment(held: set[str]) -> None:
    """The sentiment candidates compared (docs/ANALYTICS_MODELS.md): the shipped multinomial
    model and an NB-SVM, each with no bias and with the per-class bias on its scores that
    maximises macro-recall on SemEval-2016's test split held out of training (with every tweet
    loosely equal to one of it); then, fit on all the training data, on XLM-T's validation
    tweets in the other languages. Reads no test set."""
    dev = data.semeval_train((SENTIMENT_DEV,))
    rows = _sentiment_rows(held, without={_loose(t) for t, _ in dev})
    every = _sentiment_rows(held)
    seen = {_key(t) for t, _ in every}
    xval = [(t, y) for t, y, c in data.xlmt_sentiment("val") if c != "en" and _key(t) not in seen]
    print(f"{len(rows)} training tweets, {len(dev)} held out; {len(xval)} XLM-T val tweets")
    featurizer = Featurizer(SENTIMENT_SPEC, SentimentIntensityAnalyzer())
    dev_x, xval_x = (featurizer.transform([t for t, _ in r]) for r in (dev, xval))
    dev_gold, xval_gold = (np.asarray([SENTIMENTS.index(y) for _, y in r]) for r in (dev, xval))

    def macro_recall(scores: np.ndarray, gold: np.ndarray, bias: Sequence[float]) -> float:
        predicted = (scores + np.asarray(bias)).argmax(axis=1)
        return float(np.mean([np.mean(predicted[gold == k] == k) for k in range(3)]))

    grid = np.round(np.arange(-1.5, 2.01, 0.1), 1)
    for name in ("multinomial", "NB-SVM"):
        fits = []
        for training in (rows, every):
            x = to_csr(featurizer.transform([t for t, _ in training]))
            y = np.asarray([label for _, label in training])
            if name == "NB-SVM":
                fits.append(_nb_svm(x, y))
            else:
                model = _fit_sgd(x, y, None, SENTIMENT_ALPHA, "balanced")
                fits.append((np.asarray(model.coef_.T, np.float32), model.intercept_))
        (w_dev, b_dev), (w_all, b_all) = fits
        # Log-probabilities for the multinomial model, one-against-rest log-odds for NB-SVM.
        dev_s = dev_x.dot(w_dev) + b_dev
        xval_s = xval_x.dot(w_all) + b_all
        if name == "multinomial":
            dev_s = dev_s - np.log(np.exp(dev_s).sum(axis=1, keepdims=True))
        best = max(
            ((float(a), 0.0, float(b)) for a in grid for b in grid),
            key=lambda bias: macro_recall(dev_s, dev_gold, bias),
        )
        for bias in ((0.0, 0.0, 0.0), best):
            print(
                f"{name}, bias {bias}: dev macro-recall {macro_recall(dev_s, dev_gold, bias):.4f}"
                f", XLM-T val (7 languages) {macro_recall(xval_s, xval_gold, bias):.4f}"
            )


def _unlabelled_pool() -> list[str]:
    pool = [t for t, _ in data.semeval_train()]
    pool += [t for t, _, _ in data.xlmt_sentiment("train")]
    for task in ("emoji", "offensive"):
        pool += data.read(data.TWEETEVAL, f"datasets/{task}/train_text.txt").splitlines()
    return pool


# Subtracted, times log(share of the weak labels), from each category's score: the weak labels
# over-represent the categories whose keywords are common, and macro-F1 weighs small
# categories as much as large ones. Chosen with KEYWORD_WEIGHT by `--select-category`.
CATEGORY_PRIOR_CORRECTION = 0.5


def _category_rows(held: set[str]) -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    """(human-labelled tweets with their categories, weakly labelled tweets)."""
    human = [
        (text, sorted({FROM_TWEETTOPIC[t] for t in topics}))
        for split in ("train", "validation")
        for text, topics, _ in data.topicxl(split)
    ]
    matcher = KeywordMatcher()
    seen: set[str] = set()
    weak: list[tuple[str, str]] = []
    for text in _unlabelled_pool():
        key = _key(text)
        if key in held or key in seen:
            continue
        seen.add(key)
        votes = matcher.votes(text)
        if len(votes) == 1:
            weak.append((text, next(iter(votes))))
    return human, weak


def _fit_category(
    featurizer: Featurizer,
    human: Sequence[tuple[str, list[str]]],
    weak: Sequence[tuple[str, str]],
) -> LinearModel:
    texts = [t for t, _ in weak]
    labels = [c for _, c in weak]
    weights = [1.0] * len(weak)
    for text, categories in human:
        for category in categories:  # a tweet of k topics: k rows of weight 1/k
            texts.append(text)
            labels.append(category)
            weights.append(HUMAN_WEIGHT / len(categories))
    missing = set(CATEGORIES) - set(labels)
    if missing:
        raise SystemExit(f"no training rows for {sorted(missing)}")
    model = _fit(featurizer, texts, labels, weights, alpha=5e-5, class_weight=None)
    order = [model.classes.index(c) for c in CATEGORIES]
    return LinearModel(
        classes=CATEGORIES,
        spec=model.spec,
        weights=np.ascontiguousarray(model.weights[:, order]),
        intercept=model.intercept[order],
    )


def _weak_log_prior(weak: Sequence[tuple[str, str]]) -> np.ndarray:
    counts = np.asarray([sum(c == name for _, c in weak) for name in CATEGORIES], float) + 1.0
    log_prior: np.ndarray = np.log(counts / counts.sum()).astype(np.float32)
    return log_prior


def train_category(held: set[str]) -> LinearModel:
    human, weak = _category_rows(held)
    print(f"category: {len(human)} human-labelled tweets, {len(weak)} weakly labelled tweets")
    model = _fit_category(Featurizer(CATEGORY_SPEC, None), human, weak)
    return LinearModel(
        classes=model.classes,
        spec=model.spec,
        weights=model.weights,
        intercept=model.intercept - CATEGORY_PRIOR_CORRECTION * _weak_log_prior(weak),
    )


def select_category(held: set[str]) -> None:
    """How KEYWORD_WEIGHT (server/analytics/insights/insights.py) and CATEGORY_PRIOR_CORRECTION
    were chosen: 5-fold cross-validation over the 800 human-labelled tweets (the weak labels
    always in training), macro-F1 over the single-label ones. Never looks at the test split."""
    human, weak = _category_rows(held)
    featurizer = Featurizer(CATEGORY_SPEC, None)
    matcher = KeywordMatcher()
    fold = np.random.default_rng(0).integers(0, 5, len(human))
    scores = np.zeros((len(human), len(CATEGORIES)), dtype=np.float32)
    for k in range(5):
        model = _fit_category(
            featurizer, [h for h, f in zip(human, fold, strict=True) if f != k], weak
        )
        tested = [t for (t, _), f in zip(human, fold, strict=True) if f == k]
        log_p = np.log(model.probabilities(featurizer.transform(tested)) + 1e-9)
        scores[fold == k] = log_p
        print(f"fold {k} done", flush=True)
    votes = np.asarray(
        [[matcher.votes(t).get(c, 0) for c in CATEGORIES] for t, _ in human], dtype=np.float32
    )
    single = [k for k, (_, cats) in enumerate(human) if len(cats) == 1]
    gold = np.asarray([CATEGORIES.index(human[k][1][0]) for k in single])
    log_prior = _weak_log_prior(weak)

    def macro_f1(predicted: np.ndarray) -> float:
        f1 = []
        for c in set(gold.tolist()):
            hit = float(np.sum((predicted == c) & (gold == c)))
            f1.append(2 * hit / (np.sum(predicted == c) + np.sum(gold == c)))
        return float(np.mean(f1))

    print(f"{len(single)} single-label tweets")
    for weight in (0.5, 1.0, 2.0, 4.0):
        for correction in (0.0, 0.5, 1.0):
            combined = scores[single] - correction * log_prior + weight * votes[single]
            print(
                f"keyword weight {weight}, prior correction {correction}: "
                f"macro-F1 {macro_f1(combined.argmax(axis=1)):.4f}"
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--only", choices=("sentiment", "category"))
    parser.add_argument("--select-sentiment", action="store_true", help=select_sentiment.__doc__)
    parser.add_argument("--select-category", action="store_true", help=select_category.__doc__)
    args = parser.parse_args(argv)
    try:
        held = _held_out()
        if args.select_sentiment or args.select_category:
            (select_sentiment if args.select_sentiment else select_category)(held)
            return
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
