"""The image's tests run only from `make image-test`, which builds the images first."""

from __future__ import annotations

import os

# Not collected by a plain `pytest` (`make test`): they need podman and the built images.
if os.environ.get("SOCIALHUB_IMAGE_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]
