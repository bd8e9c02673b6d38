"""Offline content insights for posts: sentiment, category and language.

    models = InsightModels.load()          # once per process: about a second, ~200 MB
    models.analyze_many(["Loving the new album!", ...])

Nothing is downloaded at run time: the language model ships in py3langid's wheel, VADER's
lexicon in vaderSentiment's, and the sentiment and category weights in models/ here.
Models, data and measured accuracy: docs/ANALYTICS_MODELS.md.
"""

from server.analytics.insights.insights import Insight, InsightModels, Sentiment
from server.analytics.insights.language import LANGUAGES, UNDETERMINED
from server.analytics.insights.taxonomy import CATEGORIES, CATEGORY_DESCRIPTIONS

__all__ = [
    "CATEGORIES",
    "CATEGORY_DESCRIPTIONS",
    "LANGUAGES",
    "UNDETERMINED",
    "Insight",
    "InsightModels",
    "Sentiment",
]
