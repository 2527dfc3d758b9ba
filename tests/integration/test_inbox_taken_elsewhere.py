"""Several nodes watch one shared inbox: a node may find a complete file, check that it is there, and have it
taken (stored, acked and removed) by another node before it opens it. That is the file being gone, as when the
other node was quicker by a moment more: not a failure. Before, the node logged it at ERROR as a lasting failure
of its inbox task (``supervisor.task_failed transient=false ... no such file``, once in a 3-node soak run of 120
files) and counted it against the file's name, so that later files of that name were set aside sooner.

The other node's removal is placed in that gap deterministically: the ack folder's check, which runs between the
look and the open, removes the real file first."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from gateway.bootstrap import App
from gateway.services import inbox
from gateway.services.inbox import UploadBook, ingest_dropped
from gateway.store.db import read_tx
from gateway.store.schema import submissions
from tests.conftest import ROOT


def test_a_file_taken_by_another_node_between_the_look_and_the_open_is_gone_not_failed(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True)
    path = upload / "claims.csv"
    path.write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
    checked = inbox.check_ack_folder

    def taken_meanwhile(app_: App, client_id: str) -> None:
        path.unlink()  # the other node has stored the file and removed it from upload/
        checked(app_, client_id)

    monkeypatch.setattr(inbox, "check_ack_folder", taken_meanwhile)
    assert ingest_dropped(app, UploadBook(app), "demo", path) is None
    ack = app.config.inbox_dir / "demo" / "ack" / "claims.csv.ack.csv"
    assert not ack.exists()  # the other node's answer stands; this node writes none
    with read_tx(app.engine) as conn:
        assert conn.execute(select(func.count()).select_from(submissions)).scalar_one() == 0

