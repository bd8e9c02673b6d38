"""Copy the google/api and google/rpc protos of the googleapis-common-protos wheel for buf.

buf reads protos only from its workspace and runs offline here, so `make` copies the few files
our protos import (and the TypeScript client's error types need) into .tools/googleapis, which
buf.yaml lists as a module. Nothing of googleapis is committed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from generate import googleapis_root

FILES = (
    "google/api/field_behavior.proto",
    "google/api/resource.proto",
    "google/api/client.proto",
    "google/api/launch_stage.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "google/rpc/code.proto",
)


def main(target: Path) -> None:
    root = googleapis_root()
    shutil.rmtree(target, ignore_errors=True)
    for name in FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, target / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
