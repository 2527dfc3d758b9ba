"""serve's tasks that work through many items (clients' status files, sandbox retention's files, interrupted
submissions) meeting a fault of ONE item at every look: a real EPERM (``chattr +i``), a stored row damaged in the
database. The item's failure is logged and counted, the other items have their turn, the item is tried again at a
later look, and the gateway never ends for it (the supervisor gives up on an error that comes back at every look:
one poisoned item must not take intake down, restart after restart)."""

from __future__ import annotations

import asyncio
import csv
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.entrypoints.sftp import status_files_step
from gateway.entrypoints.supervisor import Supervisor
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.sftp_support import client_csv

PLANTED = "Mustermann-4711"  # a debtor's name that must reach no log line


def _immutable(path: Path, on: bool) -> bool:
    """``chattr +i``: nothing may be created in or deleted from it, not even by root (a real EPERM from the kernel,
    as a read-only mount or folder gives a gateway not running as root)."""
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


async def _until(what: str, check: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.02)


def _planted_csv(path: Path, prefix: str) -> Path:
    """A demo-layout CSV of two valid rows, the first debtor named ``PLANTED``."""
    client_csv(path, 2, prefix)
    with open(path, encoding="cp1252", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    rows[1][rows[0].index("Nachname")] = PLANTED
    with open(path, "w", encoding="cp1252", newline="") as fh:
        csv.writer(fh, delimiter=";", lineterminator="\r\n").writerows(rows)
    return path


def _two_clients(tmp_path: Path, db_url: str, **extra: Any) -> App:
    clients = {cid: {"name": cid, "mapping": "demo", "default_partner": "demo-agency",
                     "sftp": {"status_format": fmt}} for cid, fmt in (("demo", "csv"), ("acme", "xml"))}
    cfg = write_config(tmp_path, db_url, clients=clients, routing=[{"partner": "demo-agency"}],
                       sftp={"status_interval_seconds": 3600}, **extra)
    init_keys(load_config(cfg))
    return build_app(cfg, migrate=True)


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_a_client_whose_status_file_cannot_be_written_keeps_no_other_clients_file_and_ends_nothing(
        tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = _two_clients(tmp_path, db_url)
    try:
        ingest_file(app, _planted_csv(tmp_path / "d.csv", "D"), "demo")
        ingest_file(app, _planted_csv(tmp_path / "a.csv", "A"), "acme")
        stuck = app.config.inbox_dir / "demo" / "status"  # demo comes first: before, acme's file never came
        stuck.mkdir(parents=True, exist_ok=True)
        other = app.config.inbox_dir / "acme" / "status"
        if not _immutable(stuck, True):
            pytest.skip("chattr +i is not available on this file system")
        try:
            async def run() -> None:
                stop = asyncio.Event()
                sup = Supervisor(stop, backoff_base=0.05, backoff_max=0.1, give_up_after=2)
                sup.start("status_files", lambda: status_files_step(app, sup), every=0.05)
                try:
                    await _until("the other client's file", lambda: list(other.glob("status_*.xml")))
                    await _until("demo's failure counted at three looks",
                                 lambda: sup.health["status_files"].failures >= 3)
                    assert not stop.is_set() and sup.exit_code == 0  # give_up_after=2 would have ended it
                    assert sup.health["status_files"].consecutive == 0
                    assert "PermissionError" in str(sup.health["status_files"].last_error)
                    assert not list(stuck.glob("status_*"))

                    _immutable(stuck, False)  # the folder mended: the file planned meanwhile is written
                    await _until("demo's file", lambda: list(stuck.glob("status_*.csv")))
                    await _until("the episode closed", lambda: sup.health["status_files"].failing_since is None)
                    assert not stop.is_set()
                finally:
                    stop.set()
                    await sup.join(10)
            asyncio.run(run())
        finally:
            _immutable(stuck, False)
    finally:
        app.close()
    lines = _messages(caplog)
    [said] = [x for x in lines if x.startswith("supervisor.task_failed")]  # once, not at every look
    assert "task=status_files" in said and "client=demo" in said and "PermissionError" in said
    assert any(x.startswith("supervisor.task_recovered task=status_files") for x in lines)
    assert not any("gave_up" in x for x in lines)
    assert not any(PLANTED in x for x in lines)
    [written] = list((app.config.inbox_dir / "demo" / "status").glob("status_*.csv"))
    assert "D-000000" in written.read_text(encoding="utf-8")  # the changes of the look that failed: none lost
