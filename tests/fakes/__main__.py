"""`python -m tests.fakes`: serve the fakes until interrupted, printing the environment that
points PublishingSettings at them (KEY=value lines, then one demo account per platform)."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from tests.fakes import running_fakes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes")
    for name in ("x", "linkedin", "meta"):
        parser.add_argument(f"--port-{name}", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with running_fakes((args.port_x, args.port_linkedin, args.port_meta)) as fakes:
        for key, value in fakes.env().items():
            print(f"{key}={value}")
        # Accounts for the demo: consent on each fake picks these.
        x = fakes.x.add_account("Demo on X", "socialhub_demo")
        linkedin = fakes.linkedin.add_account("Demo on LinkedIn")
        page = fakes.meta.add_page("Demo Page", "socialhub.demo")
        print(
            f"# demo accounts: x={x.account_id} linkedin={linkedin.account_id} "
            f"facebook={page.account_id} instagram={page.instagram_id}"
        )
        # For `make run` (server/demo_platforms.py), which connects them: fake tokens, which
        # only this process honours.
        tokens = {
            "x": [x.access_token, x.refresh_token],
            "linkedin": [linkedin.access_token, linkedin.refresh_token],
            "facebook": [page.user_access_token, None],
            "instagram": [page.user_access_token, None],
        }
        print(f"# demo tokens {json.dumps(tokens)}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
