"""The client's ack folder stops taking the ack while a file is being ingested (removed and replaced by a file,
as a clean-up script or a failing mount does): the gateway's storage, not the file. The file is not counted
against (its resumes, its tries): once the folder is back, it completes. Before, each such run counted as a resume
and the fourth ended the file "failed: interrupted ... most likely because of the file"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.gen import write_csv
from gateway.bootstrap import App
from gateway.services.ack import AckUnwritable
from gateway.services.ingest import MAX_RESUMES, ingest_file
from gateway.services.ingest_run import PROGRESS
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx


def _break_folder_on_first_chunk(folder: Path) -> object:
    def progress(rows: int) -> None:
        if folder.is_dir():
            shutil.rmtree(folder)
            folder.write_text("not a folder")  # the ack's rename into place now fails
    return PROGRESS.set(progress)


def test_an_ack_folder_that_breaks_mid_ingest_does_not_count_against_the_file(app: App, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "claims.csv", 3_000)
    folder = app.config.inbox_dir / "demo" / "ack"
    for attempt in range(MAX_RESUMES + 2):
        token = _break_folder_on_first_chunk(folder)
        try:
            with pytest.raises(AckUnwritable, match="the ack could not be written"):
                ingest_file(app, path, "demo", channel="watch")
        finally:
            PROGRESS.reset(token)  # type: ignore[arg-type]
        assert folder.is_file()
        folder.unlink()
    result = ingest_file(app, path, "demo", channel="watch")
    assert result.status == "completed", result
    assert result.rows == 3_000 and result.accepted == 3_000
    with read_tx(app.engine) as conn:
        sub = sub_store.get(conn, str(result.submission))
    assert (sub["status"], sub["resume_attempts"]) == ("completed", 1)  # the last, successful resume alone
    ack = Path(str(result.ack_path)).read_text(encoding="utf-8")
    assert "interrupted" not in ack and ack.count("accepted") == 3_000
