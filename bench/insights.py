"""Measures the insight models on public labelled sets they were not trained on.

    python -m bench.insights [--out bench/results/insights.json]

Per task: accuracy and macro-F1 (macro-recall too for sentiment, SemEval-2017's measure)
beside a majority-class baseline and, where one exists, a simple one (VADER alone, keywords
alone); then load time, memory and posts per second on one core. The data comes through
bench/insights_data.py (cached, or fetched from GitHub at pinned commits).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
from sklearn.metrics import accuracy_score, f1_score, recall_score

from bench import insights_data as data
from bench.insights_train import fresh_english
from bench.intervals import macro_f1_difference_interval, macro_recall_interval

Scores = dict[str, float]


def _scores(gold: Sequence[str], predicted: Sequence[str]) -> Scores:
    labels = sorted(set(gold))
    return {
        "n": len(gold),
        "accuracy": round(float(accuracy_score(gold, predicted)), 4),
        "macro_f1": round(float(f1_score(gold, predicted, labels=labels, average="macro")), 4),
        "macro_recall": round(
            float(recall_score(gold, predicted, labels=labels, average="macro")), 4
        ),
    }


def _with_interval(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """The scores, and the 95 % bootstrap band of the macro-recall (bench/intervals.py)."""
    low, high = macro_recall_interval(gold, predicted)
    return {**_scores(gold, predicted), "macro_recall_95": [low, high]}


def _majority(gold: Sequence[str]) -> list[str]:
    return [Counter(gold).most_common(1)[0][0]] * len(gold)


def language(analyze: Callable[[Sequence[str]], list[Any]]) -> dict[str, Any]:
    from server.analytics.insights import LANGUAGES

    supported = set(LANGUAGES) | {"nb"}
    sentences = [(t, c) for t, c in data.lingua_sentences() if c in supported]
    gold = ["no" if c == "nb" else c for _, c in sentences]
    predicted = [i.language for i in analyze([t for t, _ in sentences])]
    result: dict[str, Any] = {
        "sentences": {
            "set": "lingua-py language-testdata/sentences (Leipzig corpora), 1,000 a language",
            "languages": len(set(gold)),
            "model": _scores(gold, predicted),
            "majority": _scores(gold, _majority(gold)),
            "worst": sorted(
                (
                    round(
                        sum(p == g for p, g in zip(predicted, gold, strict=True) if g == lang)
                        / gold.count(lang),
                        3,
                    ),
                    lang,
                )
                for lang in set(gold)
            )[:8],
        }
    }
    tweets = [(t, c) for t, _, c in data.xlmt_sentiment("test")]
    tweets += [(t, c) for t, _, c in data.topicxl("test")]
    gold = [c for _, c in tweets]
    predicted = [i.language for i in analyze([t for t, _ in tweets])]
    result["tweets"] = {
        "set": "XLM-T sentiment test (ar de en es fr hi it pt) + TweetTopicXL test (en es el ja)",
        "languages": len(set(gold)),
        "model": _scores(gold, predicted),
        "majority": _scores(gold, _majority(gold)),
        "undetermined": predicted.count("und"),
        # XLM-T's Hindi tweets are romanised (Hinglish); the model knows Hindi in Devanagari.
        "model_without_romanised_hindi": _scores(
            [g for g in gold if g != "hi"],
            [p for p, g in zip(predicted, gold, strict=True) if g != "hi"],
        ),
        "accuracy_by_language": {
            lang: round(
                sum(p == g for p, g in zip(predicted, gold, strict=True) if g == lang)
                / gold.count(lang),
                3,
            )
            for lang in sorted(set(gold))
        },
    }
    return result


def sentiment(analyze: Callable[[Sequence[str]], list[Any]]) -> dict[str, Any]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    test = data.tweeteval_sentiment("test")
    gold = [y for _, y in test]
    predicted = [i.sentiment for i in analyze([t for t, _ in test])]
    vader = SentimentIntensityAnalyzer()

    def vader_label(text: str) -> str:
        compound = vader.polarity_scores(text)["compound"]
        return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"

    result: dict[str, Any] = {
        "english": {
            "set": "TweetEval sentiment test = SemEval-2017 Task 4A test (12,284 tweets)",
            "model": _with_interval(gold, predicted),
            "majority": _scores(gold, _majority(gold)),
            "vader_alone": _scores(gold, [vader_label(t) for t, _ in test]),
        }
    }
    fresh, in_training, repeated = fresh_english()
    gold = [y for _, y in fresh]
    predicted = [i.sentiment for i in analyze([t for t, _ in fresh])]
    result["english_fresh"] = {
        "set": "Kaggle Tweet Sentiment Extraction (Figure Eight tweets of 2009), the fresh "
        "English test set, less tweets equal to a training tweet and repeats",
        "dropped_equal_to_training": in_training,
        "dropped_repeats": repeated,
        "model": _with_interval(gold, predicted),
        "majority": _scores(gold, _majority(gold)),
        "vader_alone": _scores(gold, [vader_label(t) for t, _ in fresh]),
    }
    rows = list(data.xlmt_sentiment("test"))
    predicted = [i.sentiment for i in analyze([t for t, _, _ in rows])]
    per_language = {}
    for code in data.XLMT_LANGUAGES.values():
        index = [k for k, r in enumerate(rows) if r[2] == code]
        gold = [rows[k][1] for k in index]
        per_language[code] = {
            "model": _with_interval(gold, [predicted[k] for k in index]),
            "majority": _scores(gold, _majority(gold)),
        }
    result["xlm_t"] = {"set": "XLM-T (UMSAB) test, 870 tweets a language", **per_language}
    return result


def category(analyze: Callable[[Sequence[str]], list[Any]]) -> dict[str, Any]:
    from server.analytics.insights.keywords import KeywordMatcher
    from server.analytics.insights.taxonomy import FROM_TWEETTOPIC

    rows = [
        (text, sorted({FROM_TWEETTOPIC[t] for t in topics}), code)
        for text, topics, code in data.topicxl("test")
        if topics  # a quarter have no label two annotators agreed on
    ]
    predicted = [i.category for i in analyze([t for t, _, _ in rows])]
    keywords = KeywordMatcher()
    majority = Counter(c for _, cats, _ in rows for c in cats).most_common(1)[0][0]
    systems = {
        "model": predicted,
        "keywords_alone": [keywords.predict(t, majority) for t, _, _ in rows],
        "majority": [majority] * len(rows),
    }
    single = [k for k, r in enumerate(rows) if len(r[1]) == 1]
    gold = [rows[k][1][0] for k in single]
    result: dict[str, Any] = {
        "set": "TweetTopicXL test (en es el ja), TweetTopic labels mapped to the taxonomy",
        "single_label_tweets": len(single),
        "labelled_tweets": len(rows),
    }
    for name, labels in systems.items():
        result[name] = {
            **_scores(gold, [labels[k] for k in single]),
            "top1_in_gold_all": round(
                sum(labels[k] in rows[k][1] for k in range(len(rows))) / len(rows), 4
            ),
        }
    low, high = macro_f1_difference_interval(
        gold,
        [systems["model"][k] for k in single],
        [systems["keywords_alone"][k] for k in single],
    )
    result["model_minus_keywords_macro_f1_95"] = [low, high]
    return result


def speed(models: Any, texts: Sequence[str], batch: int = 256) -> dict[str, float]:
    models.analyze_many(texts[:batch])  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), batch):
        models.analyze_many(texts[start : start + batch])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    single = texts[:500]
    one = time.perf_counter()
    for text in single:
        models.analyze(text)
    one = time.perf_counter() - one
    return {
        "posts": len(texts),
        "batch": batch,
        "posts_per_s_wall": round(len(texts) / wall),
        "posts_per_cpu_s": round(len(texts) / cpu),
        "analyze_one_ms": round(1000 * one / len(single), 3),
    }


_FRESH = """
import json, resource, sys, time
from pathlib import Path
started = time.perf_counter()
from server.analytics.insights import InsightModels
models = InsightModels.load(Path(sys.argv[1]))
models.analyze_many(["warm-up post, nothing more"])
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds_import_and_load": round(seconds, 2), "peak_rss_mb": round(peak)}))
"""


def fresh_process(directory: Path) -> dict[str, float]:
    """Load time and peak memory of a process that does nothing but load the models."""
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/insights.json"))
    parser.add_argument(
        "--models", type=Path, help="measure the models written there (a candidate's)"
    )
    parser.add_argument("--only-sentiment", action="store_true", help="the sentiment sets only")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one core, as the target is stated
    from server.analytics.insights.models import MODEL_DIR

    directory = args.models or MODEL_DIR
    try:
        if args.only_sentiment:
            report = {"models": str(directory), "sentiment": sentiment(_batched(directory))}
        else:
            fresh = fresh_process(directory)
            process = psutil.Process()
            before = process.memory_info().rss
            from server.analytics.insights import InsightModels

            models = InsightModels.load(directory)
            rss_mb = (process.memory_info().rss - before) / 2**20
            report = measure(models, fresh, rss_mb)
    except data.DataUnavailable as error:
        sys.exit(str(error))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=2, ensure_ascii=False))


def _batched(directory: Path) -> Callable[[Sequence[str]], list[Any]]:
    from server.analytics.insights import InsightModels

    models = InsightModels.load(directory)

    def analyze(texts: Sequence[str]) -> list[Any]:
        return [
            i for s in range(0, len(texts), 512) for i in models.analyze_many(texts[s : s + 512])
        ]

    return analyze


def measure(models: Any, fresh: dict[str, float], rss_mb: float) -> dict[str, Any]:
    def analyze(texts: Sequence[str]) -> list[Any]:
        return [
            i for s in range(0, len(texts), 512) for i in models.analyze_many(texts[s : s + 512])
        ]

    tweets = [t for t, _ in data.tweeteval_sentiment("test")]
    return {
        "load": {
            **fresh,
            "seconds_load_only": round(models.load_seconds, 2),
            "rss_added_by_load_mb": round(rss_mb),
        },
        "throughput": speed(models, tweets),
        "language": language(analyze),
        "sentiment": sentiment(analyze),
        "category": category(analyze),
        "data": {
            r.name: r.commit
            for r in (
                data.SEMEVAL,
                data.TWEETEVAL,
                data.XLMT,
                data.TOPICXL,
                data.LINGUA,
                data.TWEET_EXTRACTION,
                data.SENTIMENT140,
            )
        },
    }


if __name__ == "__main__":
    main()
