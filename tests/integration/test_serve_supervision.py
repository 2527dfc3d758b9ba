"""`serve` keeps working through faults: every supervised task gets a non-gateway exception, then the SQLite
write lock is held longer than the busy timeout; files dropped and uploaded afterwards are still ingested,
acked and delivered, and each fault is one error line.

`serve` runs in-process (its own event loop in a thread, no signal handlers) so that the faults can be
injected into the real functions its tasks call; everything else is real: watchdog, asyncssh, SQLite or
PostgreSQL, the directory partner, CMS.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

import gateway.entrypoints.intake_tasks as intake_tasks
import gateway.entrypoints.partner_tasks as partner_tasks
import gateway.entrypoints.sftp as sftp_entry
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.entrypoints.serve import serve
from gateway.services.dispatch import Dispatcher
from gateway.services.keys import init_keys
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from tests.conftest import ROOT, write_config
from tests.sftp_support import client_csv, make_key, sftp_clients_config, wait_for

TASKS = ("inbox", "sftp.ingest", "dispatch", "partner_sync", "status_files")


class ServeThread:
    """``serve`` on its own loop in a thread, stopped through its stop event."""

    def __init__(self, app: App) -> None:
        self.app, self.loop = app, asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.code: int | None = None
        self.hard_exits: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.code = self.loop.run_until_complete(serve(self.app, signals=False, stop=self.stop,
                                                       hard_exit=self.hard_exits.append))
        self.loop.close()

    def __enter__(self) -> ServeThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        assert not self.thread.is_alive()


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, calls: list[str]) -> None:
    """Make ``owner.name`` raise a RuntimeError on its first call, then behave as before."""
    real: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        if calls.count(name) == 1:
            raise RuntimeError(f"injected fault in {name}")
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, wrapper)


def failures(caplog: pytest.LogCaptureFixture, task: str, kind: str = "") -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("supervisor.task_failed") and f"task={task} " in r.getMessage()
            and kind in r.getMessage()]


@pytest.fixture
def served_app(tmp_path: Path, db_url: str) -> Iterator[tuple[App, Path]]:
    key = make_key(tmp_path / "client-keys", "demo")
    cfg = write_config(tmp_path, db_url, sftp={"enabled": True, "port": 0, "status_interval_seconds": 0.5},
                       clients=sftp_clients_config({"demo": key}),
                       database={"url": db_url, "busy_timeout_seconds": 0.5},
                       supervisor={"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.3})
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    yield app, key.private
    app.close()


def upload(app: App, key: Path, port: int, local: Path) -> None:
    async def go() -> None:
        host_key = asyncssh.read_private_key(str(app.config.keys_dir / "ssh_host_ed25519_key"))
        known = asyncssh.import_known_hosts(f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
        async with asyncssh.connect("127.0.0.1", port, username="demo", known_hosts=known,
                                    client_keys=[str(key)], agent_path=None) as conn:
            async with conn.start_sftp_client() as sftp:
                await sftp.put(str(local), f"/upload/{local.name}")
    asyncio.run(go())


def acked(app: App, name: str) -> Path | None:
    ack = app.config.inbox_dir / "demo" / "ack" / f"{name}.ack.csv"
    return ack if ack.exists() else None


def delivered(app: App, *names: str) -> bool:
    with read_tx(app.engine) as conn:
        subs = {s["filename"]: s for s in sub_store.listing(conn, client_id="demo", limit=100)}
    return all(n in subs and subs[n]["status"] != "processing" for n in names) and \
        len(list((app.config.var_dir / "partners" / "demo-agency").glob("*.p7m"))) >= len(names)


def drop(app: App, source: Path, name: str) -> None:
    upload_dir = app.config.inbox_dir / "demo" / "upload"
    # The watcher makes the folder when its task starts, which may come after the SFTP port is logged (seen under
    # load); a file already there when it starts is found by its sweep.
    upload_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, upload_dir / f"{name}.part")
    (upload_dir / f"{name}.part").rename(upload_dir / name)


def test_every_task_survives_an_exception_and_a_held_write_lock(
        served_app: tuple[App, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    app, key = served_app
    caplog.set_level(logging.INFO)
    calls: list[str] = []
    fail_once(monkeypatch, intake_tasks, "ingest_dropped", calls)
    fail_once(monkeypatch, sftp_entry, "ingest_upload", calls)
    fail_once(monkeypatch, Dispatcher, "lease", calls)  # what the dispatch step calls
    fail_once(monkeypatch, partner_tasks, "sync_due", calls)
    fail_once(monkeypatch, sftp_entry, "write_due_status_files", calls)

    with ServeThread(app) as st:
        port = int(wait_for("the SFTP port", lambda: next((m.group(1) for r in caplog.records if (
            m := re.search(r"sftp\.listening host=\S+ port=(\d+)", r.getMessage()))), None)))
        drop(app, ROOT / "examples" / "demo.csv", "demo.csv")
        upload(app, key, port, client_csv(tmp_path / "first.csv", 40, "FIRST"))
        wait_for("both files acked and delivered", lambda: acked(app, "demo.csv") and acked(app, "first.csv")
                 and delivered(app, "demo.csv", "first.csv"))
        wait_for("every task to run again after its fault", lambda: all(calls.count(n) >= 2 for n in (
            "ingest_dropped", "ingest_upload", "lease", "sync_due", "write_due_status_files")))
        for task in TASKS:
            assert len(failures(caplog, task, "RuntimeError")) == 1, (task, failures(caplog, task))

        if app.engine.url.get_backend_name() == "sqlite":
            # Another process's writer holds the lock four times longer than the gateway waits for it.
            db = sqlite3.connect(str(app.engine.url.database), isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            try:
                drop(app, ROOT / "examples" / "demo.csv", "locked.csv")  # same bytes, new name: a duplicate ack
                upload_dir = app.config.inbox_dir / "demo" / "upload"
                client_csv(tmp_path / "second.csv", 30, "SECOND")
                shutil.copy(tmp_path / "second.csv", upload_dir / "second.csv")
                wait_for("the ingest and the delivery to meet the lock",
                         lambda: failures(caplog, "inbox", "locked") and failures(caplog, "dispatch", "locked"))
            finally:
                db.execute("ROLLBACK")
                db.close()
            wait_for("the files after the lock acked", lambda: acked(app, "locked.csv") and acked(app, "second.csv"))
            wait_for("their claims delivered", lambda: delivered(app, "demo.csv", "first.csv", "second.csv"), 60)
            for task in TASKS:  # one line per fault and task, however long the lock was held
                assert len(failures(caplog, task, "locked")) <= 1, (task, failures(caplog, task))
            assert "duplicate" in (acked(app, "locked.csv") or Path()).read_text(encoding="utf-8")

        upload(app, key, port, client_csv(tmp_path / "after.csv", 25, "AFTER"))
        wait_for("an upload after all faults acked", lambda: acked(app, "after.csv"))
        assert "accepted" in (acked(app, "after.csv") or Path()).read_text(encoding="utf-8")
    assert st.code == 0 and st.hard_exits == []
    assert not [r for r in caplog.records if "supervisor.gave_up" in r.getMessage()]


def test_the_retention_tasks_survive_an_exception(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The hourly sandbox and credit-check retention steps: a non-gateway exception in each is logged once
    and the step runs again after its backoff (not an hour later, and serve goes on)."""
    from adapters.bureaus.simulators.http_sim import refused_port
    import gateway.services.erasure as erasure

    sandbox = {"adapter": "directory", "certificate": "var/keys/partners/sandbox.crt",
               "options": {"path": "var/partners/sandbox"}, "sandbox": True,
               "simulator": {"enabled": True, "step_seconds": 1}}
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False},
                       bureaus={"j": {"adapter": "http_json",
                                      "options": {"url": f"http://127.0.0.1:{refused_port()}"}}},
                       clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
                                         "sandbox": {"retention_days": 30}, "credit": {"bureaus": ["j"]}}},
                       partners={"demo-agency": {"adapter": "directory",
                                                 "certificate": "var/keys/partners/demo-agency.crt",
                                                 "options": {"path": "var/partners/demo-agency"}},
                                 "sandbox": sandbox},
                       supervisor={"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.3})
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    caplog.set_level(logging.INFO)
    calls: list[str] = []
    fail_once(monkeypatch, erasure, "run_sandbox_retention", calls)
    fail_once(monkeypatch, erasure, "run_credit_retention", calls)
    try:
        with ServeThread(app) as st:
            wait_for("both retention steps to run again after their fault", lambda: all(
                calls.count(n) >= 2 for n in ("run_sandbox_retention", "run_credit_retention")))
            for task in ("sandbox_retention", "credit_retention"):
                assert len(failures(caplog, task, "RuntimeError")) == 1, (task, failures(caplog, task))
        assert st.code == 0 and st.hard_exits == []
    finally:
        app.close()
