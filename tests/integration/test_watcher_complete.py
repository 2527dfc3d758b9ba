"""A dropped file is taken when its writer is done with it: slow writers, markers, renames, the sweep.

Real watchdog observer on tmp_path, real writer processes with real pauses longer than the stability
window, the real ingest path (``ingest_dropped``) driven like ``serve`` drives it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.entrypoints.intake_tasks import InboxTask
from gateway.entrypoints.supervisor import Supervisor
from gateway.entrypoints.watcher import InboxWatcher
from gateway.services.inbox import UploadBook, ingest_dropped, process_inbox_file
from gateway.services.ingest import IngestResult
from gateway.services.keys import init_keys
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from tests.conftest import write_config
from tests.sftp_support import client_csv
from tests.support import wait_for

WRITER = Path(__file__).with_name("chunk_writer.py")
ROWS = 400


@pytest.fixture
def app2(tmp_path: Path, db_url: str) -> Iterator[App]:
    """The demo client, and a client whose files count only at their ``.done`` marker."""
    client = {"mapping": "demo", "default_partner": "demo-agency"}
    path = write_config(tmp_path, db_url, clients={"demo": {"name": "Demo", **client},
                                                   "marked": {"name": "Marked", "watch_marker": True, **client}},
                        routing=[{"partner": "demo-agency"}])
    init_keys(load_config(path))
    application = build_app(path, migrate=True)
    yield application
    application.close()


class Driver:
    """What ``serve`` does with the watcher: take the ready files and ingest them, in a thread."""

    def __init__(self, app: App) -> None:
        cfg = app.config
        self.app, self.book = app, UploadBook(app)
        self.watcher = InboxWatcher({cid: self.upload(cid) for cid in cfg.clients}, cfg.watcher.stable_seconds,
                                    ignore=self.book.is_tracked,
                                    marker_only={cid for cid, c in cfg.clients.items() if c.watch_marker})
        self.results: list[IngestResult] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def upload(self, client_id: str) -> Path:
        folder = self.app.config.inbox_dir / client_id / "upload"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def __enter__(self) -> "Driver":
        self.watcher.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.watcher.stop()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for client_id, path in self.watcher.ready():
                try:
                    result = ingest_dropped(self.app, self.book, client_id, path)
                except BaseException as exc:  # surfaced by the test, never swallowed
                    self.errors.append(exc)
                    continue
                if result is not None:
                    self.results.append(result)

    def done(self, name: str) -> IngestResult | None:
        return next((r for r in self.results if r.filename == name), None)


def writer(mode: str, source: Path, dest: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WRITER), mode, str(source), str(dest), *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err  # 3: the file was deleted while it was still being written


def submissions(app: App) -> dict[str, dict[str, object]]:
    with read_tx(app.engine) as conn:
        return {s["filename"]: dict(s) for s in sub_store.listing(conn)}


def whole(result: IngestResult | None) -> None:
    assert result is not None and result.status == "completed"
    assert (result.rows, result.accepted) == (ROWS, ROWS)


def test_slow_writers_are_ingested_once_whole(app2: App, tmp_path: Path) -> None:
    # stable_seconds is 0.3; every writer pauses 1.5 s between its 4 chunks
    assert app2.config.watcher.stable_seconds < 1.5
    with Driver(app2) as d:
        procs = [
            writer("hold", client_csv(tmp_path / "h.csv", ROWS, "H"), d.upload("demo") / "held.csv"),
            writer("rename", client_csv(tmp_path / "r.csv", ROWS, "R"), d.upload("demo") / "renamed.csv"),
            writer("append", client_csv(tmp_path / "m.csv", ROWS, "M"), d.upload("marked") / "marked.csv",
                   "--marker"),
        ]
        for proc in procs:
            finished(proc)
        names = ("held.csv", "renamed.csv", "marked.csv")
        wait_for("all three files ingested", lambda: all(d.done(n) for n in names))
        wait_for("the upload folders emptied", lambda: not any(any(d.upload(c).iterdir()) for c in ("demo", "marked")))
    assert d.errors == []
    for name in names:
        whole(d.done(name))
    subs = submissions(app2)
    assert sorted(subs) == sorted(names)  # once each: no partial first submission, no second one
    assert all((s["status"], s["rows"], s["accepted"]) == ("completed", ROWS, ROWS) for s in subs.values())
    ack = app2.config.inbox_dir / "demo" / "ack" / "held.csv.ack.csv"
    assert len(ack.read_text(encoding="utf-8").splitlines()) == ROWS + 1


def test_a_file_open_for_writing_is_neither_taken_nor_deleted(app2: App, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.entrypoints.watcher")
    with Driver(app2) as d:
        path = d.upload("demo") / "open.csv"
        proc = writer("wait", client_csv(tmp_path / "o.csv", ROWS, "O"), path)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        wait_for("the watcher to see the writer", lambda: any(
            "watcher.waiting" in r.getMessage() and "open.csv" in r.getMessage() for r in caplog.records))
        assert submissions(app2) == {}  # whole and quiet, but still open: not taken
        assert ingest_dropped(app2, d.book, "demo", path) is None  # the ingest path checks again
        # ingested by hand while the writer still holds it: stored, but the file is not deleted
        with d.book.client_lock("demo"):
            whole(process_inbox_file(app2, "demo", path))
        assert path.exists()
        assert any("inbox.kept" in r.getMessage() and "reason=open_for_writing" in r.getMessage()
                   for r in caplog.records)
        assert proc.stdin is not None
        proc.stdin.write("close\n")
        proc.stdin.flush()
        finished(proc)  # it kept writing into a file that still exists
        # after the close the watcher takes it: the same bytes are a duplicate, and now it goes
        result = wait_for("the closed file to be taken", lambda: d.done("open.csv"))
        assert result.status == "duplicate"
        wait_for("the file removed", lambda: not path.exists())
    assert d.errors == []
    assert list(submissions(app2)) == ["open.csv"]


def test_the_start_up_sweep_takes_files_dropped_while_down(app2: App, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.entrypoints.watcher")
    upload = app2.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True)
    client_csv(upload / "before.csv", ROWS, "B")  # complete before the gateway started
    late = writer("wait", client_csv(tmp_path / "l.csv", ROWS, "L"), upload / "late.csv")  # still being written
    assert late.stdout is not None and late.stdout.readline().strip() == "written"
    with Driver(app2) as d:
        whole(wait_for("the swept file ingested", lambda: d.done("before.csv")))
        wait_for("the sweep to see the writer", lambda: any(
            "watcher.waiting" in r.getMessage() and "late.csv" in r.getMessage() for r in caplog.records))
        assert "late.csv" not in submissions(app2)
        assert late.stdin is not None
        late.stdin.write("close\n")
        late.stdin.flush()
        finished(late)
        whole(wait_for("the late file ingested after its close", lambda: d.done("late.csv")))
        wait_for("the upload folder emptied", lambda: not any(upload.iterdir()))
    assert d.errors == []
    assert sorted(submissions(app2)) == ["before.csv", "late.csv"]


def test_writer_checks_see_a_real_write_handle(tmp_path: Path) -> None:
    """Both ways of asking (the read lease and the /proc scan) see another process's write handle."""
    from gateway.services.file_writers import _proc_writers, has_writer, identity, remove_unless_written

    path = tmp_path / "w.csv"
    proc = writer("wait", client_csv(tmp_path / "src.csv", 10, "W"), path)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    st = path.stat()
    assert has_writer(path) is True
    assert _proc_writers(st) is True  # as root every process can be read; otherwise it may say None
    assert remove_unless_written(path, st) == "open_for_writing" and path.exists()
    assert proc.stdin is not None
    proc.stdin.write("close\n")
    proc.stdin.flush()
    finished(proc)
    with open(path, "rb"):  # a reader is no writer
        assert has_writer(path) is False
        assert _proc_writers(path.stat()) in (False, None)
    assert identity(path.stat()) == identity(st)  # closed without another write: still the file ingested
    with open(path, "ab") as fh:
        fh.write(b"more\r\n")
    assert remove_unless_written(path, st) == "changed" and path.exists()
    assert remove_unless_written(path, path.stat()) is None and not path.exists()


def test_a_database_fault_while_the_watcher_looks_loses_no_file(app2: App) -> None:
    # serve's watch step as serve runs it (InboxTask, its supervisor), and the watcher's SFTP check asking the
    # database. The connection cut away while that check runs for the second file (as the soak's --cut-db does):
    # the first file, handed out just before, stayed marked as handed and was never offered again; in a soak 12
    # files sat in the inbox for 5 minutes with no submission and no ack until the run gave up on them.
    upload = app2.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True)
    names = ["a.csv", "b.csv", "c.csv"]
    for i, name in enumerate(names):
        client_csv(upload / name, 20, f"F{i}")
    book = UploadBook(app2)
    cut = {"b.csv"}

    def tracked(client_id: str, path: Path) -> bool:
        if path.name in cut:
            cut.discard(path.name)
            raise OperationalError("SELECT uploads", {}, Exception("server closed the connection unexpectedly"))
        return book.is_tracked(client_id, path)

    watcher = InboxWatcher({"demo": upload}, 0.0, ignore=tracked)
    task = InboxTask(app2, book, watcher, Supervisor(asyncio.Event()))
    acks = app2.config.inbox_dir / "demo" / "ack"
    failures: list[BaseException] = []

    def step() -> bool:
        try:
            asyncio.run(task.step())
        except OperationalError as exc:  # the supervisor reports it and runs the step again
            failures.append(exc)
        return all((acks / f"{name}.ack.csv").exists() for name in names)

    watcher.start()
    try:
        watcher.sweep()
        wait_for("every file acked", step)
    finally:
        watcher.stop()
    assert len(failures) == 1 and not cut
    assert sorted(submissions(app2)) == names
    assert not any(upload.iterdir())


def test_files_found_by_the_sweep_are_offered_oldest_first(tmp_path: Path) -> None:
    # After a restart with a backlog, every file is "found" by the sweep at about the same moment, in the order
    # the folder lists them: the file that had waited longest came when its turn in that listing came (in a
    # 2-node soak, minutes after files dropped later).
    upload = tmp_path / "upload"
    upload.mkdir()
    for i in range(12):
        client_csv(upload / f"f{i:02d}.csv", 1, f"F{i}")
    listed = [p.name for p in upload.iterdir()]
    for age, name in enumerate(listed):  # the folder's listing order is newest first
        os.utime(upload / name, ns=(1_700_000_000_000_000_000 - age * 60_000_000_000,) * 2)
    watcher = InboxWatcher({"demo": upload}, 0.0)
    watcher.start()
    try:
        watcher.sweep()
        assert [path.name for _, path in watcher.ready()] == listed[::-1]
    finally:
        watcher.stop()
