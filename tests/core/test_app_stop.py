"""Application.stop stops every part even when one part's stop fails."""

from __future__ import annotations

from server.core.embedded import free_port
from tests.harness import Backing, ServerThread, test_settings


def _failures(error: BaseException) -> list[BaseException]:
    assert isinstance(error, ExceptionGroup), repr(error)
    return list(error.exceptions)


def test_a_part_whose_stop_fails_leaves_no_other_part_running(backing: Backing) -> None:
    """With its database gone, the parts that write on their way out (the insights worker,
    the API keys' last uses, ...) fail to stop; the metrics sampler, the loop watch, the
    publishing listener and the pools are stopped all the same, and the failures come out
    together, each saying which part it was."""
    nowhere = f"postgresql://socialhub:none@127.0.0.1:{free_port()}/socialhub"
    server = ServerThread(
        test_settings(db_pool_timeout_s=1.0), nowhere, backing.redis_url, {"run_jobs": False}
    ).start()
    server.stop()

    assert server.error is not None
    failures = _failures(server.error)
    assert failures
    notes = [note for failure in failures for note in getattr(failure, "__notes__", [])]
    assert len(notes) == len(failures)
    assert all(note.startswith("while stopping ") for note in notes)
    # Every task the server started (all of them named) ended with its stop; what asyncio
    # or a driver names itself ("Task-N") is theirs to finish.
    assert [name for name in server.leftover_tasks if not name.startswith("Task-")] == []


def test_a_clean_stop_raises_nothing_and_leaves_nothing(backing: Backing) -> None:
    server = ServerThread(
        test_settings(), backing.database_url, backing.redis_url, {"run_jobs": False}
    ).start()
    server.stop()

    assert server.error is None
    assert server.leftover_tasks == []
