"""The content models of this process, and the version their insights are stored under.

Loading takes about a second and ~160 MB, so a process loads them once, however many servers
it builds (tests build several; `serve --workers N` forks first, so each worker loads its own),
and never at import: the insights worker loads them in a thread when a post first needs them,
and `socialhub insights backfill` when it runs. The version names the weights and the language
model's package, so a retrained model (or a new py3langid) makes every stored insight stale
for the backfill, while a restart with the same models changes nothing.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.analytics.insights import InsightModels

# Not imported from server.analytics.insights.models: importing anything of the package loads
# numpy, whose OpenBLAS starts threads at import, and `serve --workers N` must fork a process
# without threads. The package is imported where the models are loaded or used, after the fork.
MODEL_DIR = Path(__file__).resolve().parent / "insights" / "models"
# Dependencies whose version changes what the models answer.
_PACKAGES = ("py3langid", "vaderSentiment")


@functools.cache
def shared_models() -> InsightModels:
    from server.analytics.insights import InsightModels

    return InsightModels.load()


@functools.cache
def model_version() -> str:
    digest = hashlib.sha256()
    weights = sorted(MODEL_DIR.glob("*.npz"))
    if not weights:
        raise RuntimeError(f"no model weights in {MODEL_DIR}")
    for path in weights:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for package in _PACKAGES:
        digest.update(f"{package}=={metadata.version(package)}".encode())
    return f"insights-{digest.hexdigest()[:16]}"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
