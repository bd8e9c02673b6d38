"""The committed TypeScript code (clients/typescript/src/gen) is what `make generate` makes now."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

from tests.clients.typescript_tools import BUF, GENERATED, NODE_BIN, REPO, tool


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_committed_typescript_matches_protos(tmp_path: Path) -> None:
    tool(NODE_BIN / "protoc-gen-es")
    # The same template as `make generate`, written under tmp_path instead of the checkout
    # (its plugin path and inputs are relative to the repository root).
    run = subprocess.run(
        [tool(BUF), "generate", "--template", "buf.gen.yaml", "--output", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    fresh = tmp_path / GENERATED.relative_to(REPO)
    assert _files(fresh), "buf generate wrote nothing"
    assert _files(fresh) == _files(GENERATED), "run `make generate` and commit the result"
    stale = [
        name
        for name in sorted(_files(fresh))
        if not filecmp.cmp(fresh / name, GENERATED / name, shallow=False)
    ]
    assert not stale, f"stale generated files {stale}: run `make generate`"
