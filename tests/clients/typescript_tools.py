"""Where the TypeScript client lives and how the tests run its tools (node, buf, tsx)."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "clients" / "typescript"
NODE_BIN = PACKAGE / "node_modules" / ".bin"
BUF = REPO / ".tools" / "node_modules" / ".bin" / "buf"
GENERATED = PACKAGE / "src" / "gen"


def tool(path: Path) -> str:
    """The path of a tool `make install` puts there; failing (not skipping) when it is missing,
    so that a checkout without it cannot pass the TypeScript tests by not running them."""
    assert shutil.which("node") is not None, "node is not on PATH: the TypeScript client needs it"
    assert path.exists(), f"{path} is missing: run `make install`"
    return str(path)
