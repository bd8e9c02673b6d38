"""The fakes themselves: as a process for the demo, and platform details adapters rely on."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.fakes import running_fakes


def test_the_fakes_run_as_a_process_and_print_their_environment() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(13)]
        env = dict(line.split("=", 1) for line in lines if "=" in line and "#" not in line)
        assert set(env) >= {"X_API_BASE_URL", "LINKEDIN_API_BASE_URL", "META_GRAPH_BASE_URL"}
        assert lines[-1].startswith("# demo accounts:")
        # Unauthenticated, the fake answers like X.
        assert httpx.get(f"{env['X_API_BASE_URL']}/2/users/me").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_meta_sends_usage_headers_on_every_answer_and_errors_as_graph_does() -> None:
    with running_fakes() as fakes:
        response = httpx.get(f"{fakes.meta.url}/v23.0/me/accounts")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == 190
        assert json.loads(response.headers["x-app-usage"])["call_count"] >= 0
        assert "x-business-use-case-usage" in response.headers


def test_x_refresh_tokens_are_single_use_and_linkedins_are_not() -> None:
    with running_fakes() as fakes:
        for fake, url, reusable in [
            (fakes.x, f"{fakes.x.url}/2/oauth2/token", False),
            (fakes.linkedin, f"{fakes.linkedin.url}/oauth/v2/accessToken", True),
        ]:
            account = fake.add_account()
            form = {
                "grant_type": "refresh_token",
                "refresh_token": account.refresh_token or "",
                "client_id": fake.client_id,
                "client_secret": fake.client_secret,
            }
            assert httpx.post(url, data=form).status_code == 200
            again = httpx.post(url, data=form)
            assert (again.status_code == 200) is reusable
            if not reusable:
                assert again.json()["error"] == "invalid_grant"
