"""serve's housekeeping tasks under the supervisor, meeting errors that are no ``GatewayError``: a broken-off upload
that cannot be deleted, a certificate file the library fails on, a TLS reload that fails in an unforeseen way.
Each is logged and counted, keeps no other file or listener from its turn, and never ends the gateway (the
supervisor gives up on an error that comes back at every look: a side task must not take intake down with it)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.bootstrap import App
from gateway.entrypoints.sftp import SftpInbox
from gateway.entrypoints.supervisor import Supervisor
from gateway.entrypoints.tls_follow import CertificateFollower, step_all
from gateway.services import cert_expiry
from gateway.services.cert_expiry import CertificateWatch
from gateway.services.inbox import UploadBook

HOUR = 3600.0
PLANTED = "Mustermann-4711"  # a value that must reach no log line


def _broken_off(book: UploadBook, name: str) -> Path:
    path = book.upload_dir("demo") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    book.begin_write("demo", name)
    path.write_bytes(f"Rechnungsnr;Nachname\nRE-1;{PLANTED}\nRE-2;Mus".encode())  # cut off mid-row
    book.end_write("demo", name, complete=False)
    then = time.time() - 80 * HOUR
    os.utime(path, (then, then))
    return path


def _immutable(path: Path, on: bool) -> bool:
    """``chattr +i``: not even root may delete the file (a real EPERM from the kernel, as a read-only mount or
    folder gives a gateway not running as root)."""
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


async def _until(what: str, check: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_broken_off_upload_that_cannot_be_deleted_keeps_no_other_from_going_and_ends_nothing(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # a look every second (retention/4, at least 1 s); uploads 80 h old are past it
    app.config.sftp.incomplete_retention_hours = 0.001
    book = UploadBook(app)
    stuck, other = _broken_off(book, "a-stuck.csv"), _broken_off(book, "b-other.csv")
    if not _immutable(stuck, True):
        pytest.skip("chattr +i is not available on this file system")
    try:
        async def run() -> None:
            stop = asyncio.Event()
            sup = Supervisor(stop, backoff_base=0.05, backoff_max=0.1, give_up_after=2)
            inbox = SftpInbox(app, book, sup)
            inbox.start_tasks()
            try:
                await _until("the other upload is deleted", lambda: not other.exists())
                await _until("the stuck one is counted", lambda: sup.health["sftp.incomplete"].failures >= 1)
                runs = sup.health["sftp.incomplete"].runs
                await _until("three more looks", lambda: sup.health["sftp.incomplete"].runs >= runs + 3, 10)
                assert not stop.is_set() and sup.exit_code == 0  # give_up_after=2 would have ended it by now
                assert sup.health["sftp.incomplete"].consecutive == 0
                assert "PermissionError" in str(sup.health["sftp.incomplete"].last_error)
                assert stuck.exists() and book.state("demo", "a-stuck.csv") == "incomplete"  # tried again later
            finally:
                stop.set()
                await sup.join(10)
        asyncio.run(run())
    finally:
        _immutable(stuck, False)
    [said] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("supervisor.task_failed")]
    assert "task=sftp.incomplete" in said and "client=demo" in said and "PermissionError" in said
    assert not any(PLANTED in r.getMessage() for r in caplog.records)

    assert book.drop_stale_incomplete(0.0) == [("demo", "a-stuck.csv")]  # the folder mended: it goes


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_certificate_the_library_fails_on_hides_no_other_and_ends_nothing(
        app: App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    partner_cert = app.config.path(app.config.partners["demo-agency"].certificate)
    real = cert_expiry.x509.load_pem_x509_certificates

    def load(data: bytes) -> Any:
        # Planted: no file on disk makes cryptography raise anything but ValueError; a new release, a Rust
        # panic in the parser (a BaseException from pyo3) or a bug of ours could.
        if data == partner_cert.read_bytes():
            raise RuntimeError(f"planted {PLANTED}")
        return real(data)

    monkeypatch.setattr(cert_expiry.x509, "load_pem_x509_certificates", load)
    watch = CertificateWatch(app)

    async def run() -> None:
        stop = asyncio.Event()
        sup = Supervisor(stop, backoff_base=0.05, backoff_max=0.1, give_up_after=2)
        sup.start("certificates", lambda: asyncio.to_thread(watch.step), every=0.05)
        try:
            await _until("five looks", lambda: sup.health["certificates"].runs >= 5)
            assert not stop.is_set() and sup.health["certificates"].failures == 0
        finally:
            stop.set()
            await sup.join(10)
    asyncio.run(run())
    assert ("signing", "gateway") in watch.remaining  # the others have their figures
    assert ("partner", "demo-agency") not in watch.remaining
    lines = [r.getMessage() for r in caplog.records]
    [said] = [x for x in lines if x.startswith("certs.unreadable")]  # once, not at every look
    assert "role=partner name=demo-agency" in said and "RuntimeError" in said
    assert not any(PLANTED in x for x in lines)

    monkeypatch.setattr(cert_expiry.x509, "load_pem_x509_certificates", real)
    partner_cert.write_bytes(partner_cert.read_bytes())  # the file changes (a renewal): read again
    os.utime(partner_cert, (time.time() + 5, time.time() + 5))
    watch.step()
    assert ("partner", "demo-agency") in watch.remaining
    assert any(r.getMessage().startswith("certs.readable role=partner") for r in caplog.records)


def test_a_tls_reload_that_fails_unforeseen_is_counted_once_and_delays_no_other_listener(tmp_path: Path) -> None:
    files = {n: tmp_path / f"{n}.crt" for n in ("soap", "web")}
    for f in files.values():
        f.write_text("one")
    installed: list[str] = []

    def build(name: str) -> Any:
        def make() -> str:
            if name == "soap":
                raise RuntimeError(f"planted {PLANTED}")  # planted: what a bug in a listener's reload would raise
            return files[name].read_text()
        return make

    followers = [CertificateFollower(n, files[n], files[n], build(n), installed.append) for n in ("soap", "web")]
    for f in files.values():
        f.write_text("two")
    with pytest.raises(RuntimeError):  # raised for the supervisor, after the web listener had its look
        step_all(followers)
    assert installed == ["two"]
    installed.clear()

    async def run() -> None:
        stop = asyncio.Event()
        sup = Supervisor(stop, backoff_base=0.05, backoff_max=0.1, give_up_after=2)
        sup.start("tls", lambda: asyncio.to_thread(step_all, followers), every=0.05)
        try:
            await _until("a few looks", lambda: sup.health["tls"].runs >= 3)
            for f in files.values():  # both renewed at once
                f.write_text("two!")
            await _until("the web listener takes its renewal", lambda: installed == ["two!"])
            await _until("the soap listener's failure is counted", lambda: sup.health["tls"].failures == 1)
            runs = sup.health["tls"].runs
            await _until("more looks", lambda: sup.health["tls"].runs >= runs + 3)
            assert sup.health["tls"].failures == 1  # said once: tried again at the files' next change
            assert sup.health["tls"].consecutive == 0 and not stop.is_set()
            assert "RuntimeError" in str(sup.health["tls"].last_error)
            assert PLANTED not in str(sup.health["tls"].last_error)
        finally:
            stop.set()
            await sup.join(10)
    asyncio.run(run())
