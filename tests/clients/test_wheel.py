"""The client wheel users install carries the hand-written client beside the generated stubs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"


def test_the_client_wheel_has_the_client_and_the_stubs(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(CLIENT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("socialhub_client-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    client = {f"socialhub/client/{p.name}" for p in (CLIENT / "socialhub" / "client").glob("*.py")}
    assert client <= names
    assert {
        "socialhub/py.typed",
        "socialhub/v1/profile_pb2.py",
        "socialhub/v1/feed_pb2.pyi",
    } <= names
    assert not any(name.startswith("server/") for name in names)
