"""A clean stop (SIGTERM, a deploy) in the middle of resuming a file does not count against the file: only
resumes that a crash ends do, so that three deploys during one long resume do not mark a good file failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from bench.gen import write_csv
from gateway.bootstrap import App
from gateway.errors import Interrupted
from gateway.services.inbox import resume_unfinished
from gateway.services.ingest import ingest_file
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx


def _stop_after_commits(app: App, n: int) -> Any:
    seen: list[int] = []

    def listener(conn: Any) -> None:
        seen.append(1)
        if len(seen) == n:
            app.stopping.set()  # as SIGTERM does: the ingest stops at its next chunk

    event.listen(app.engine, "commit", listener)
    return listener


def _only_submission(app: App) -> Any:
    with read_tx(app.engine) as conn:
        [sub] = sub_store.unfinished(conn)
        return sub


def test_a_clean_stop_during_a_resume_is_not_counted(app: App, tmp_path: Path) -> None:
    big = write_csv(tmp_path / "big.csv", 12_000)
    listener = _stop_after_commits(app, 3)  # the submission and its bytes, then a chunk or two
    try:
        with pytest.raises(Interrupted):
            ingest_file(app, big, "demo", workers=0)
    finally:
        event.remove(app.engine, "commit", listener)
        app.stopping.clear()
    assert _only_submission(app)["resume_attempts"] == 0

    listener = _stop_after_commits(app, 3)  # the counted resume, then a chunk
    try:
        with pytest.raises(Interrupted):
            resume_unfinished(app)
    finally:
        event.remove(app.engine, "commit", listener)
        app.stopping.clear()
    sub = _only_submission(app)
    assert sub["resume_attempts"] == 0, sub  # stopped cleanly: given back

    [done] = resume_unfinished(app)  # the next start finishes it, counted once
    assert done.status in ("completed", "completed_with_errors")
    with read_tx(app.engine) as conn:
        assert sub_store.get(conn, sub["id"])["resume_attempts"] == 1
