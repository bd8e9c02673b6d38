from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "clients" / "python" / "socialhub"


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("generate", REPO / "clients/python/generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_committed_generated_code_matches_protos(tmp_path: Path) -> None:
    _generator().generate(tmp_path)  # type: ignore[attr-defined]
    fresh = tmp_path / "socialhub"
    assert _files(fresh) == _files(COMMITTED), "run `make generate` and commit the result"
    stale = [
        name
        for name in sorted(_files(fresh))
        if not filecmp.cmp(fresh / name, COMMITTED / name, shallow=False)
    ]
    assert not stale, f"stale generated files {stale}: run `make generate`"
