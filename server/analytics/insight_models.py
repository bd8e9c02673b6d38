"""The content models of this process, and the version their insights are stored under.

Loading takes about a second and ~200 MB, so a process loads them once, however many servers
it builds (tests build several; `serve --workers N` forks first, so each worker loads its own),
and never at import: the insights worker loads them in a thread when it starts, and
`socialhub insights backfill` when it runs. The version names the weights and the language
model's package, so a retrained model (or a new py3langid) makes every stored insight stale
for the backfill, while a restart with the same models changes nothing.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata

from server.analytics.insights import InsightModels
from server.analytics.insights.models import MODEL_DIR

# Dependencies whose version changes what the models answer.
_PACKAGES = ("py3langid", "vaderSentiment")


@functools.cache
def shared_models() -> InsightModels:
    return InsightModels.load()


@functools.cache
def model_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(MODEL_DIR.glob("*.npz")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for package in _PACKAGES:
        digest.update(f"{package}=={metadata.version(package)}".encode())
    return f"insights-{digest.hexdigest()[:16]}"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
