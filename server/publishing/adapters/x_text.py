"""X's weighted length of a post, after twitter-text's configuration v3 (config/v3.json):

    maxWeightedTweetLength 280, scale 100, defaultWeight 200, transformedURLLength 23,
    emojiParsingEnabled, ranges of weight 100: U+0000-U+10FF, U+2000-U+200D,
    U+2010-U+201F, U+2032-U+2037.

So Latin, Greek, Cyrillic, Hebrew, Arabic and common punctuation weigh 1; CJK, Hangul, most
other scripts and every emoji weigh 2; an emoji sequence (ZWJ family, flag, skin tone, keycap)
weighs 2 once; every URL weighs 23 whatever its length. The text is NFC-normalized first.

No maintained PyPI package implements v3 (twitter-text-parser 3.0.0 is a stale port), so
this is a small reimplementation. URL detection is simpler than twitter-text's: a scheme
URL, a www. host, or a bare host with a common TLD.
"""

from __future__ import annotations

import re
import unicodedata

X_MAX_WEIGHTED_LENGTH = 280
URL_WEIGHT = 23
_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))

_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"]+"
    r"|\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    r"(?:com|org|net|io|co|dev|app|ai|gov|edu|info|me|ly|us|uk|de|fr|jp)\b(?:/[^\s<>\"]*)?",
    re.IGNORECASE,
)

# Code points that start an emoji presentation, and those that extend one into a sequence.
_EMOJI_BASE = (
    (0x1F000, 0x1FAFF),  # pictographs, emoticons, transport, supplemental symbols
    (0x2600, 0x27BF),  # miscellaneous symbols, dingbats
    (0x2300, 0x23FF),  # technical (watch, hourglass)
    (0x2B00, 0x2BFF),  # arrows, stars
    (0x1F1E6, 0x1F1FF),  # regional indicators (flags)
)
_ZWJ = 0x200D
_VS16 = 0xFE0F
_KEYCAP = 0x20E3
_EXTENDERS = ((0x1F3FB, 0x1F3FF), (0xE0020, 0xE007F), (_VS16, _VS16), (_KEYCAP, _KEYCAP))


def _in(cp: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _emoji_end(text: str, i: int) -> int:
    """The end of the emoji sequence starting at i, or i when none starts there."""
    cp = ord(text[i])
    keycap = (
        text[i] in "#*0123456789"
        and i + 1 < len(text)
        and ord(text[i + 1]) in (_VS16, _KEYCAP)
        and _KEYCAP in (ord(c) for c in text[i + 1 : i + 3])
    )
    if not (_in(cp, _EMOJI_BASE) or keycap):
        return i
    j = i + 1
    if 0x1F1E6 <= cp <= 0x1F1FF and j < len(text) and 0x1F1E6 <= ord(text[j]) <= 0x1F1FF:
        return j + 1  # a flag: two regional indicators
    while j < len(text):
        nxt = ord(text[j])
        if _in(nxt, _EXTENDERS):
            j += 1
        elif nxt == _ZWJ and j + 1 < len(text) and _in(ord(text[j + 1]), _EMOJI_BASE):
            j += 2
        else:
            break
    return j


def weighted_length(text: str) -> int:
    text = unicodedata.normalize("NFC", text)
    total = 0
    pos = 0
    for match in _URL.finditer(text):
        total += _plain_weight(text[pos : match.start()]) + URL_WEIGHT
        pos = match.end()
    return total + _plain_weight(text[pos:])


def _plain_weight(text: str) -> int:
    total = 0
    i = 0
    while i < len(text):
        end = _emoji_end(text, i)
        if end > i:
            total += 2
            i = end
            continue
        total += 1 if _in(ord(text[i]), _LIGHT_RANGES) else 2
        i += 1
    return total
