"""The public labelled sets the insight models are trained and measured on, pinned by commit.

Each file is read from a local git mirror of its repository when one exists (INSIGHTS_MIRRORS,
one `<owner>+<name>/repo` git directory per repository), else downloaded from GitHub at the
pinned commit, and cached under INSIGHTS_DATA (default .state/insights-data). Nothing here is
committed: run `python -m bench.insights_data` once on a machine that reaches GitHub.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from server.analytics.insights.taxonomy import FROM_TWEETTOPIC

MIRRORS = Path(os.environ.get("INSIGHTS_MIRRORS", "/work/.mirror"))
DATA = Path(os.environ.get("INSIGHTS_DATA", ".state/insights-data"))


@dataclass(frozen=True)
class Repo:
    name: str  # owner/name on GitHub
    commit: str
    licence: str


SEMEVAL = Repo(
    # SemEval-2017 Task 4 (Rosenthal et al.) English training data, 2013-2016 gold, as
    # redistributed in a course repository: the same files TweetEval's sentiment train set is.
    "FireBrother/assignment",
    "dce1476dba0acb66bb6f2aa368eca5085f51fdbe",
    "SemEval task data: research use, Twitter terms",
)
TWEETEVAL = Repo(
    "cardiffnlp/tweeteval", "4fbd22cd78421f05b1ecdb4fc5725bc7a7bd8f66", "SemEval/Twitter terms"
)
XLMT = Repo("cardiffnlp/xlm-t", "874214d64d96599eb869a033c22ec2cc57d19256", "Apache-2.0 (code)")
TOPICXL = Repo("anon7331/tweet_topicXL", "2b5db0d017f8084db65741b7868c327d32a6231e", "MIT")
LINGUA = Repo("pemistahl/lingua-py", "754ce21122c083a7200763015fdaf7cda8d85453", "Apache-2.0")
# Kaggle's "Tweet Sentiment Extraction" (2020) tweets and labels, from Figure Eight's "Data for
# Everyone" set "Sentiment Analysis: Emotion in Text" (CC BY 4.0, as the competition states):
# general-topic English tweets of 2009, negative / neutral / positive. This copy's test.csv is
# the competition's test rows (3,534) then its train rows (27,480, selected_text left out, the
# one empty row dropped): 31,014 distinct textIDs. The fresh English test set for sentiment,
# pinned before any model was run on it (docs/ANALYTICS_MODELS.md): measured only.
# Sentiment140 (Go, Bhayani & Huang 2009): tweets of 2009 labelled by the emoticon they held
# (removed from the text). A redistributed sample, the first 50,000 negative and 50,000
# positive tweets of its 1.6M training file; no licence is stated for the data (Sentiment140
# offers it for research), the repository's code is MIT. Only for the built lexicon's
# word scores (bench/insights_train.py): no tweet of it is a training row.
SENTIMENT140 = Repo(
    "geraldzakwan/iykra-sentiment-analysis",
    "0f8dae787c1e4d239f8b03a04dccfd6ddb77a6cc",
    "none stated (Sentiment140: for research), Twitter terms",
)
TWEET_EXTRACTION = Repo(
    "spence998/Tweet-Sentiment-Predictor",
    "16cc7c7d85ad379e93fab0fe4d4fa4f09d35604d",
    "CC BY 4.0 (Figure Eight Data for Everyone), Twitter terms",
)

SEMEVAL_DIR = "语义计算与知识检索/hw2/2017_English_final/GOLD/Subtask_A"
SEMEVAL_FILES = (
    "twitter-2013train-A.txt",
    "twitter-2013dev-A.txt",
    "twitter-2013test-A.txt",
    "twitter-2014test-A.txt",
    "twitter-2014sarcasm-A.txt",
    "twitter-2015train-A.txt",
    "twitter-2015test-A.txt",
    "twitter-2016train-A.txt",
    "twitter-2016dev-A.txt",
    "twitter-2016devtest-A.txt",
    "twitter-2016test-A.txt",
)
XLMT_LANGUAGES = {
    "arabic": "ar",
    "english": "en",
    "french": "fr",
    "german": "de",
    "hindi": "hi",
    "italian": "it",
    "portuguese": "pt",
    "spanish": "es",
}
TOPICXL_LABELS = tuple(FROM_TWEETTOPIC)
TOPICXL_LANGUAGES = {"en": "en", "es": "es", "gr": "el", "ja": "ja"}
# The 75 languages of lingua's test sentences (Leipzig corpora), by file name.
LINGUA_TEST = [
    "af",
    "ar",
    "az",
    "be",
    "bg",
    "bn",
    "bs",
    "ca",
    "cs",
    "cy",
    "da",
    "de",
    "el",
    "en",
    "eo",
    "es",
    "et",
    "eu",
    "fa",
    "fi",
    "fr",
    "ga",
    "gu",
    "he",
    "hi",
    "hr",
    "hu",
    "hy",
    "id",
    "is",
    "it",
    "ja",
    "ka",
    "kk",
    "ko",
    "la",
    "lg",
    "lt",
    "lv",
    "mi",
    "mk",
    "mn",
    "mr",
    "ms",
    "nb",
    "nl",
    "nn",
    "pa",
    "pl",
    "pt",
    "ro",
    "ru",
    "sk",
    "sl",
    "sn",
    "so",
    "sq",
    "sr",
    "st",
    "sv",
    "sw",
    "ta",
    "te",
    "th",
    "tl",
    "tn",
    "tr",
    "ts",
    "uk",
    "ur",
    "vi",
    "xh",
    "yo",
    "zh",
    "zu",
]


class DataUnavailable(RuntimeError):
    pass


def read(repo: Repo, path: str) -> str:
    """One file of `repo` at its pinned commit, cached under DATA."""
    cached = DATA / repo.name.replace("/", "+") / path
    if cached.exists():
        return cached.read_text(encoding="utf-8")
    text = _from_mirror(repo, path)
    if text is None:
        text = _download(repo, path)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(text, encoding="utf-8")
    return text


def _from_mirror(repo: Repo, path: str) -> str | None:
    git_dir = MIRRORS / repo.name.replace("/", "+") / "repo"
    if (git_dir / ".git").is_dir():  # a mirror with a work tree
        git_dir = git_dir / ".git"
    if not git_dir.is_dir():
        return None
    shown = subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{repo.commit}:{path}"],
        capture_output=True,
        check=False,
    )
    return shown.stdout.decode("utf-8") if shown.returncode == 0 else None


def _download(repo: Repo, path: str) -> str:
    url = f"https://raw.githubusercontent.com/{repo.name}/{repo.commit}/{urllib.parse.quote(path)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body: bytes = response.read()
    except OSError as error:
        raise DataUnavailable(
            f"{repo.name}@{repo.commit[:10]}:{path} is not cached in {DATA}, there is no git "
            f"mirror of it under {MIRRORS}, and GitHub could not be reached ({error}). Run "
            "`python -m bench.insights_data` on a machine online, or point INSIGHTS_DATA at a "
            "copy of that folder."
        ) from error
    return body.decode("utf-8")


def _lines(repo: Repo, path: str) -> list[str]:
    return read(repo, path).rstrip("\n").split("\n")


def semeval_train(files: Sequence[str] = SEMEVAL_FILES) -> list[tuple[str, str]]:
    """SemEval 2013-2016 subtask A gold (tweet, label) of `files`, duplicates by id dropped."""
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    for name in files:
        for line in _lines(SEMEVAL, f"{SEMEVAL_DIR}/{name}"):
            parts = line.split("\t")
            if len(parts) < 3 or parts[0] in seen:
                continue
            seen.add(parts[0])
            rows.append(("\t".join(parts[2:]).strip(), parts[1].strip()))
    return rows


_TWEETEVAL_LABELS = ("negative", "neutral", "positive")


def tweeteval_sentiment(split: str) -> list[tuple[str, str]]:
    """TweetEval sentiment: `test` is the SemEval-2017 test set (12,284 tweets)."""
    texts = _lines(TWEETEVAL, f"datasets/sentiment/{split}_text.txt")
    labels = _lines(TWEETEVAL, f"datasets/sentiment/{split}_labels.txt")
    return [(t, _TWEETEVAL_LABELS[int(y)]) for t, y in zip(texts, labels, strict=True)]


# TweetEval's emotion task (SemEval-2018 Task 1, Mohammad et al.): anger and sadness read as
# negative, joy and optimism as positive. Its tweets are from 2017, none in SemEval-2017's test.
_EMOTION_POLARITY = ("negative", "positive", "positive", "negative")


def tweeteval_emotion_polarity(split: str) -> list[tuple[str, str]]:
    """TweetEval emotion tweets (`split` train/val/test, 3,257/374/1,421) with the polarity of
    their emotion: no neutral tweets."""
    texts = _lines(TWEETEVAL, f"datasets/emotion/{split}_text.txt")
    labels = _lines(TWEETEVAL, f"datasets/emotion/{split}_labels.txt")
    return [(t, _EMOTION_POLARITY[int(y)]) for t, y in zip(texts, labels, strict=True)]


def sentiment140_sample() -> list[tuple[str, str]]:
    """100,000 Sentiment140 tweets (half negative, half positive by emoticon): (tweet, label)."""
    rows: list[tuple[str, str]] = []
    for label in ("negative", "positive"):
        lines = _lines(SENTIMENT140, f"data/tweets_100k/{label}.txt")
        rows += [(line.strip(), label) for line in lines if line.strip()]
    return rows


def tweet_extraction() -> list[tuple[str, str]]:
    """Kaggle's Tweet Sentiment Extraction tweets (train and test, 31,014): (tweet, label)."""
    text = read(TWEET_EXTRACTION, "tweet-sentiment-extraction/test.csv")
    rows = csv.DictReader(io.StringIO(text, newline=""))
    return [(row["text"].strip(), row["sentiment"]) for row in rows]


def xlmt_sentiment(split: str) -> Iterator[tuple[str, str, str]]:
    """XLM-T's multilingual tweet sentiment (UMSAB): (tweet, label, language)."""
    for folder, code in XLMT_LANGUAGES.items():
        texts = _lines(XLMT, f"data/sentiment/{folder}/{split}_text.txt")
        labels = _lines(XLMT, f"data/sentiment/{folder}/{split}_labels.txt")
        for text, label in zip(texts, labels, strict=True):
            yield text, _TWEETEVAL_LABELS[int(label)], code


def topicxl(split: str) -> Iterator[tuple[str, list[str], str]]:
    """TweetTopicXL: (tweet, its TweetTopic labels, language); `split` is train/validation/test."""
    for folder, code in TOPICXL_LANGUAGES.items():
        for line in _lines(TOPICXL, f"data/{folder}/{folder}_{split}.jsonl"):
            row = json.loads(line)
            labels = [k for k in TOPICXL_LABELS if row.get(k) == 1]
            yield row["text"], labels, code


def lingua_sentences(per_language: int = 1000) -> Iterator[tuple[str, str]]:
    """(sentence, ISO 639-1 code) from lingua's test sentences, the first `per_language` each."""
    for code in LINGUA_TEST:
        lines = [x.strip() for x in _lines(LINGUA, f"language-testdata/sentences/{code}.txt")]
        for line in [x for x in lines if x][:per_language]:
            yield line, code


def main() -> None:
    """Fetch and cache every file (the first step on a new machine)."""
    try:
        print(len(semeval_train()), "SemEval 2013-2016 tweets")
        for split in ("train", "val", "test"):
            print(len(tweeteval_sentiment(split)) if split != "train" else "-", "TweetEval", split)
            print(sum(1 for _ in xlmt_sentiment(split)), "XLM-T", split)
            print(len(tweeteval_emotion_polarity(split)), "TweetEval emotion", split)
        for split in ("train", "validation", "test"):
            print(sum(1 for _ in topicxl(split)), "TweetTopicXL", split)
        print(sum(1 for _ in lingua_sentences()), "lingua test sentences")
        print(len(tweet_extraction()), "Tweet Sentiment Extraction tweets")
        print(len(sentiment140_sample()), "Sentiment140 tweets")
    except DataUnavailable as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
