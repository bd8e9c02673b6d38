"""Generate the Python stubs of the client package from protos/ (run by `make generate`).

Only the generated packages (`socialhub/v1`, one per proto package) are replaced: the
hand-written client beside them (`socialhub/client`, `socialhub/__init__.py`, `py.typed`) is
kept. The same function writes into a scratch folder for the test that fails when the
committed code is stale, so both paths produce byte-identical output.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
PACKAGE_ROOT = Path(__file__).resolve().parent


def proto_files() -> list[Path]:
    return sorted(path for path in PROTO_ROOT.rglob("*.proto") if "baseline" not in path.parts)


def generated_packages() -> list[Path]:
    """The folders protoc writes, relative to the output root: one per proto package
    (`socialhub/v1`). Everything else under `socialhub/` is written by hand."""
    return sorted({path.relative_to(PROTO_ROOT).parent for path in proto_files()})


def googleapis_root() -> Path:
    """Where the googleapis-common-protos wheel keeps google/api/*.proto (field_behavior,
    resource): imported by our protos, found offline, never vendored into the repository."""
    spec = importlib.util.find_spec("google.api.field_behavior_pb2")
    if spec is None or spec.origin is None:
        raise SystemExit("googleapis-common-protos is not installed")
    return Path(spec.origin).parents[2]


def generate(out_dir: Path) -> None:
    """Write the generated packages under `out_dir`, replacing old ones, keeping the rest.

    protoc writes into a scratch folder first: a proto that does not compile leaves the
    committed stubs as they were instead of deleting them."""
    with tempfile.TemporaryDirectory() as scratch:
        _protoc(Path(scratch))
        for package in generated_packages():
            (Path(scratch) / package / "__init__.py").touch()
            shutil.rmtree(out_dir / package, ignore_errors=True)
            shutil.copytree(Path(scratch) / package, out_dir / package)


def _protoc(out_dir: Path) -> None:
    well_known = resources.files("grpc_tools") / "_proto"
    plugin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--proto_path={googleapis_root()}",
        f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(path.relative_to(PROTO_ROOT)) for path in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(PACKAGE_ROOT)
