"""An unfinished submission resumed because its file reached the client's lease again (``serve``'s inbox sweep or
recovered SFTP upload winning the race against the start-up resume, which now runs in the background; or
``gateway ingest`` of the same file) is counted like a start-up resume, and given up after ``MAX_RESUMES``: a file
whose processing kills the process cannot be resumed that way without end while the other resumes are counted."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from gateway.bootstrap import App
from gateway.services.ingest import MAX_RESUMES, ingest_file, sha256_file
from gateway.services.inbox import process_inbox_file
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx, write_tx
from gateway.store.schema import submissions
from tests.conftest import ROOT


def _interrupted(app: App, path: Path) -> int:
    """What an ingest that died right after its submission committed leaves: processing, bytes kept."""
    sha, size = sha256_file(path)
    with write_tx(app.engine) as conn:
        sub = sub_store.create(conn, client_id="demo", channel="watch", filename=path.name, sha256=sha, size=size,
                               dedupe=True, received_at=app.now())
        assert sub is not None
        sub_store.store_payload(conn, app.cipher, sub["id"], [path.read_bytes()])
        return int(sub["id"])


def _row(app: App, sub_id: int) -> tuple[str, int]:
    with read_tx(app.engine) as conn:
        row = sub_store.get(conn, sub_id)
    return row["status"], row["resume_attempts"]


def test_the_inbox_path_counts_its_resume(app: App) -> None:
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    path = upload / "demo.csv"
    path.write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
    sub_id = _interrupted(app, path)
    result = process_inbox_file(app, "demo", path)
    assert result.status.startswith("completed"), result
    assert _row(app, sub_id) == (result.status, 1)


def test_the_same_file_again_after_max_resumes_is_given_up_with_a_failed_ack(app: App, tmp_path: Path) -> None:
    path = tmp_path / "demo.csv"
    path.write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
    sub_id = _interrupted(app, path)
    with write_tx(app.engine) as conn:  # interrupted at each of the last MAX_RESUMES resumes
        conn.execute(update(submissions).where(submissions.c.id == sub_id).values(resume_attempts=MAX_RESUMES))
    result = ingest_file(app, path, "demo", channel="watch")
    assert result.status == "failed" and "interrupted" in str(result.error), result
    assert "interrupted" in Path(str(result.ack_path)).read_text(encoding="utf-8")
    assert _row(app, sub_id) == ("failed", MAX_RESUMES + 1)
