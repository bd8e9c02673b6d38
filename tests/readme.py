"""The README's grpcurl commands, as printed, run against a test server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"
README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(service: str) -> list[str]:
    """The README's grpcurl commands of one service, continuation lines joined."""
    commands = []
    for block in README.read_text().replace("\\\n", " ").splitlines():
        line = block.strip()
        if line.startswith("grpcurl ") and f"socialhub.v1.{service}/" in line:
            commands.append(line)
    return commands


def as_run_here(command: str, address: str) -> str:
    """The command with this machine's grpcurl, aimed at `address` instead of make run's."""
    return command.replace("grpcurl ", f"{GRPCURL} ", 1).replace("127.0.0.1:50051", address)


def run_readme_command(command: str, address: str, key: str) -> subprocess.CompletedProcess[str]:
    """Run one of them through the shell, as a reader pastes it, with $SOCIALHUB_KEY set."""
    return subprocess.run(
        as_run_here(command, address),
        shell=True,
        capture_output=True,
        text=True,
        timeout=30,
        env={"SOCIALHUB_KEY": key},
        check=False,
    )
