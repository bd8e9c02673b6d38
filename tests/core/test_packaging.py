"""The installed wheel (what the Docker image runs) carries its migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contains_server_and_every_migration(tmp_path: Path) -> None:
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
            str(REPO),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("socialhub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = {p.name for p in (REPO / "migrations" / "versions").glob("*.py")}
    assert {f"server/_migrations/versions/{name}" for name in migrations} <= names
    assert "server/_migrations/env.py" in names
    assert "server/cli.py" in names
