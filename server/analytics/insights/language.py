"""Language identification: py3langid's naive Bayes model (it ships inside its wheel),
restricted to the 60 languages measured in docs/ANALYTICS_MODELS.md.

Restricting helps twice: languages outside the list stop stealing short posts from those in
it, and every answer it can give has a measured accuracy. Near-twins that character n-grams
cannot tell apart on short text (Bosnian/Croatian/Serbian in Latin script, Malay/Indonesian,
Bokmål/Nynorsk) keep one member each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from server.analytics.insights.features import letters_only

UNDETERMINED: Final = "und"  # ISO 639-2's code for "no linguistic content"
# ISO 639-1 codes. py3langid says "no" for Norwegian (Bokmål in practice).
LANGUAGES: Final[tuple[str, ...]] = tuple(
    [
        "af",
        "ar",
        "az",
        "be",
        "bg",
        "bn",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
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
        "lt",
        "lv",
        "mk",
        "mn",
        "mr",
        "nl",
        "no",
        "pa",
        "pl",
        "pt",
        "ro",
        "ru",
        "sk",
        "sl",
        "sq",
        "sr",
        "sv",
        "sw",
        "ta",
        "te",
        "th",
        "tl",
        "tr",
        "uk",
        "ur",
        "vi",
        "zh",
    ]
)
# Fewer letters than this (a CJK character counts three) and even the best guess is a coin
# toss: the confidence says so. Below _FLOOR the answer is "und".
_SHORT = 12
_FLOOR = 0.2


class LanguageModel:
    def __init__(self) -> None:
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._identifier.set_languages(list(LANGUAGES))

    def identify(self, text: str) -> tuple[str, float]:
        """(ISO 639-1 code, probability), or ("und", 0.0) for text without letters."""
        letters = letters_only(text)
        if not letters:
            return UNDETERMINED, 0.0
        code, probability = self._identifier.classify(letters)
        weight = sum(3 if ord(c) >= 0x2E80 else 1 for c in letters if c != " ")
        confidence = float(probability) * min(1.0, weight / _SHORT)
        if confidence < _FLOOR:
            return UNDETERMINED, confidence
        return str(code), confidence

    def identify_many(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        return [self.identify(text) for text in texts]
