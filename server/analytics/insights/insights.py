"""InsightModels: language, sentiment and category of a post, from models loaded once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from server.analytics.insights.features import Featurizer, clean
from server.analytics.insights.keywords import KeywordMatcher
from server.analytics.insights.language import LanguageModel
from server.analytics.insights.lexicon import Lexicon
from server.analytics.insights.linear import LinearModel
from server.analytics.insights.models import MODEL_DIR
from server.analytics.insights.stack import StackedModel, stack_inputs, vader_columns
from server.analytics.insights.taxonomy import CATEGORIES

Sentiment = Literal["positive", "neutral", "negative"]
_SENTIMENTS: tuple[Sentiment, ...] = ("negative", "neutral", "positive")
_FALLBACK_CATEGORY = "Other"
_SYMBOLS = 0x2100  # letterlike symbols, arrows, dingbats, emoji and beyond
# Posts are read up to this many characters: the answer is settled long before, and the cost
# of one pasted novel stays bounded.
MAX_CHARS = 5000
# What one keyword hit adds to a category's log-probability (bench/insights_train.py
# --select-category chose it by cross-validation on the human-labelled training tweets).
KEYWORD_WEIGHT = 4.0


@dataclass(frozen=True)
class Insight:
    """What the models make of one post. Confidences are in 0..1; 0 means "no evidence"."""

    sentiment: Sentiment
    sentiment_score: float  # P(positive) - P(negative), -1..1
    sentiment_confidence: float
    category: str  # one of CATEGORIES
    category_confidence: float
    language: str  # ISO 639-1, or "und" when undetermined
    language_confidence: float


class InsightModels:
    """The three models, loaded by `load()`; `analyze_many` is the fast path."""

    def __init__(
        self,
        language: LanguageModel,
        sentiment: LinearModel,
        sentiment_features: Featurizer,
        category: LinearModel,
        category_features: Featurizer,
        keywords: KeywordMatcher,
        load_seconds: float,
        sentiment_stack: StackedModel | None = None,
    ) -> None:
        if sentiment.classes != _SENTIMENTS:
            raise ValueError(f"sentiment model classes {sentiment.classes}")
        if category.classes != CATEGORIES:
            raise ValueError("the category model was trained on another taxonomy")
        self._language = language
        self._sentiment = sentiment
        self._sentiment_features = sentiment_features
        self._category = category
        self._category_features = category_features
        self._keywords = keywords
        self.load_seconds = load_seconds
        if sentiment_stack is not None and sentiment_stack.classes != _SENTIMENTS:
            raise ValueError(f"sentiment stack classes {sentiment_stack.classes}")
        if sentiment_stack is not None and not sentiment.spec.lexicon:
            raise ValueError("the sentiment stack needs the linear model's VADER columns")
        self._sentiment_stack = sentiment_stack

    @classmethod
    def load(cls, directory: Path = MODEL_DIR) -> InsightModels:
        """The shipped models, or (to measure a candidate) those written to `directory`."""
        started = time.perf_counter()
        sentiment = LinearModel.load(directory / "sentiment.npz")
        category = LinearModel.load(directory / "category.npz")
        built = Lexicon.load(directory / "lexicon.npz") if sentiment.spec.auto_lexicon else None
        stack_path = directory / "sentiment_stack.npz"
        stack = StackedModel.load(stack_path) if stack_path.exists() else None
        return cls(
            language=LanguageModel(),
            sentiment=sentiment,
            sentiment_features=Featurizer(sentiment.spec, SentimentIntensityAnalyzer(), built),
            category=category,
            category_features=Featurizer(category.spec, None),
            keywords=KeywordMatcher(),
            load_seconds=time.perf_counter() - started,
            sentiment_stack=stack,
        )

    def analyze(self, text: str) -> Insight:
        return self.analyze_many([text])[0]

    def analyze_many(self, texts: Sequence[str]) -> list[Insight]:
        """Insights in input order. CPU-bound (~0.4 ms a post): async callers run it in a
        worker thread or process. The loaded models are only read, so threads may share them."""
        if not texts:
            return []
        texts = [text[:MAX_CHARS] for text in texts]
        languages = self._language.identify_many(texts)
        sentiments = self._sentiments(texts, languages)
        categories = self._category.probabilities(self._category_features.transform(texts))
        return [
            self._insight(text, s, c, language)
            for text, s, c, language in zip(texts, sentiments, categories, languages, strict=True)
        ]

    def _sentiments(self, texts: list[str], languages: list[tuple[str, float]]) -> np.ndarray:
        """The linear model's probabilities, or the stacked combiner's where it applies (every
        post, or the posts identified as English)."""
        features = self._sentiment_features.transform(texts)
        stack = self._sentiment_stack
        if stack is None:
            return self._sentiment.probabilities(features)
        scores = self._sentiment.scores(features)
        probabilities = self._sentiment.probabilities(features, scores)
        chosen = [
            k for k, (code, _) in enumerate(languages) if not stack.english_only or code == "en"
        ]
        if chosen:
            x = stack_inputs(
                stack.inputs,
                scores[chosen],
                vader_columns(features, self._sentiment.spec)[chosen],
                [texts[k] for k in chosen],
            )
            probabilities[chosen] = stack.probabilities(x)
        return probabilities

    def _insight(
        self,
        text: str,
        sentiment: np.ndarray,
        category: np.ndarray,
        language: tuple[str, float],
    ) -> Insight:
        code, language_confidence = language
        if not _has_content(text):
            return Insight("neutral", 0.0, 0.0, _FALLBACK_CATEGORY, 0.0, code, 0.0)
        best = int(sentiment.argmax())
        chosen, category_confidence = self._choose_category(text, category)
        return Insight(
            sentiment=_SENTIMENTS[best],
            sentiment_score=float(sentiment[2] - sentiment[0]),
            sentiment_confidence=float(sentiment[best]),
            category=chosen,
            category_confidence=category_confidence,
            language=code,
            language_confidence=language_confidence,
        )

    def _choose_category(self, text: str, probabilities: np.ndarray) -> tuple[str, float]:
        # Each keyword hit adds KEYWORD_WEIGHT to the category's log-probability: keywords are
        # more precise than the model for the small topics, which the model, trained on few
        # human labels, rarely picks; the model still decides among several hit categories.
        votes = self._keywords.votes(text)
        if votes:
            scores = np.log(probabilities + 1e-9)
            for category, hits in votes.items():
                scores[CATEGORIES.index(category)] += KEYWORD_WEIGHT * hits
            probabilities = np.exp(scores - scores.max())
            probabilities /= probabilities.sum()
        best = int(probabilities.argmax())
        return CATEGORIES[best], float(probabilities[best])


def _has_content(text: str) -> bool:
    """A letter, digit, emoji or symbol besides links and handles; punctuation alone is not."""
    stripped = clean(text).replace("httpurl", "").replace("@user", "")
    return any(c.isalnum() or ord(c) >= _SYMBOLS for c in stripped)


__all__ = ["CATEGORIES", "Insight", "InsightModels", "Sentiment"]
