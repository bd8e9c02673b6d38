from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
# Generated and hand-written modules share the package: only the generated folders are compared.
CLIENT_ROOT = REPO / "clients" / "python"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", CLIENT_ROOT / "generate.py")
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
    generator = _generator()
    generator.generate(tmp_path)
    packages: list[Path] = generator.generated_packages()
    assert packages, "no proto package found"
    for package in packages:
        fresh, committed = tmp_path / package, CLIENT_ROOT / package
        assert _files(fresh) == _files(committed), "run `make generate` and commit the result"
        stale = [
            name
            for name in sorted(_files(fresh))
            if not filecmp.cmp(fresh / name, committed / name, shallow=False)
        ]
        assert not stale, f"stale generated files in {package} {stale}: run `make generate`"


def test_generation_replaces_only_the_generated_packages(tmp_path: Path) -> None:
    generator = _generator()
    package = generator.generated_packages()[0]
    hand_written = tmp_path / "socialhub" / "client" / "channel.py"
    hand_written.parent.mkdir(parents=True)
    hand_written.write_text("KEEP = True\n")
    leftover = tmp_path / package / "removed_pb2.py"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("# from a proto that no longer exists\n")

    generator.generate(tmp_path)

    assert hand_written.read_text() == "KEEP = True\n"
    assert not leftover.exists(), "a generated module of a removed proto would linger"
    assert (tmp_path / package / "__init__.py").exists()
