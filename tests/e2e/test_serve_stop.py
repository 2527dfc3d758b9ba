"""`gateway serve` stops in bounded time whatever it is doing, and the next start goes on without loss or
duplicates: SIGTERM during a long ingest, during a partner sync that hangs, and a second signal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.gen import write_csv
from tests.conftest import write_config
from tests.e2e.test_serve_demo import GATEWAY, gateway
from tests.support import wait_for

STOP_WITHIN = 10.0  # seconds: the documented bound (supervisor.stop_grace_seconds is 7 by default)


class Serve:
    def __init__(self, tmp_path: Path, cfg: Path) -> None:
        self.tmp_path, self.cfg, self.runs = tmp_path, cfg, 0
        self.proc: subprocess.Popen[str] | None = None
        self.log = tmp_path / "serve-0.log"

    def start(self, ready_within: float = 30.0) -> subprocess.Popen[str]:
        self.runs += 1
        self.log = self.tmp_path / f"serve-{self.runs}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([*GATEWAY, "--config", str(self.cfg), "serve"], stdout=out,
                                         stderr=subprocess.STDOUT, text=True, cwd=self.tmp_path)
        wait_for("serve to be ready", lambda: "serve.ready" in self.log.read_text() or self.proc.poll() is not None,
                 ready_within)
        assert self.proc.poll() is None, self.log.read_text()
        return self.proc

    def signal_and_time(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        return code, time.monotonic() - t0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[Serve]:
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    s = Serve(tmp_path, cfg)
    yield s
    s.close()


def test_sigterm_during_a_long_ingest_stops_in_time_and_the_next_start_finishes_it(
        served: Serve, tmp_path: Path) -> None:
    rows = 60_000
    big = write_csv(tmp_path / "big.csv", rows)
    served.start()
    upload = tmp_path / "inbox" / "demo" / "upload"
    os.replace(big, upload / "big.csv")
    wait_for("the ingest to store its first chunk", lambda: "ingest.received" in served.log.read_text(), 60)
    code, took = served.signal_and_time()
    assert code == 0 and took < STOP_WITHIN, (code, took, served.log.read_text()[-2000:])
    first = served.log.read_text()
    assert "serve.stopped" in first or "serve.abandoned" in first
    interrupted = json.loads(gateway(served.cfg, "submissions", "list", "--json").stdout)
    assert [s["status"] for s in interrupted] == ["processing"]  # stopped half way, to be resumed

    # the interrupted submission is resumed in the background: serve is ready (its fronts open) at once,
    # before the rest of the 60,000 rows are stored
    served.start()
    ack = tmp_path / "inbox" / "demo" / "ack" / "big.csv.ack.csv"
    wait_for("the ack of the resumed file", ack.exists, 120)
    wait_for("the resume to be logged", lambda: "serve.resumed" in served.log.read_text(), 30)
    second = served.log.read_text()
    assert second.index("serve.ready") < second.index("serve.resumed"), second[-3000:]
    wait_for("the file to leave the inbox", lambda: not (upload / "big.csv").exists(), 30)
    code, _ = served.signal_and_time()
    assert code == 0
    subs = json.loads(gateway(served.cfg, "submissions", "list", "--json").stdout)
    assert len(subs) == 1 and subs[0]["status"] in ("completed", "completed_with_errors"), subs
    assert subs[0]["rows"] == rows
    stored = subs[0]["accepted"] + subs[0]["held"]
    claims = json.loads(gateway(served.cfg, "claims", "list", "--json", "--limit", "1000000").stdout)
    assert len(claims) == stored and len({c["creditor_reference"] for c in claims}) == stored
    lines = ack.read_text(encoding="utf-8").splitlines()
    assert len(lines) == rows + 1  # header + one line per row, once


class HangingPartner:
    """A partner API that accepts connections and never answers (a real socket, no HTTP stub)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


def test_sigterm_during_a_hanging_partner_sync_stops_in_time(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'var' / 'gateway.db'}"  # the stop path is the same on both databases
    partner_api = HangingPartner()
    try:
        partner = {"adapter": "http", "certificate": "var/keys/partners/demo-agency.crt",
                   "options": {"url": f"http://127.0.0.1:{partner_api.port}", "timeout": 120},
                   "sync": {"every_seconds": 1}}
        cfg = write_config(tmp_path, db_url, partners={"demo-agency": partner})
        assert gateway(cfg, "keys", "init").returncode == 0
        assert gateway(cfg, "db", "upgrade").returncode == 0
        s = Serve(tmp_path, cfg)
        try:
            s.start()
            wait_for("the partner sync to hang on the partner", lambda: partner_api.accepted, 30)
            code, took = s.signal_and_time()
            assert took < STOP_WITHIN, (took, s.log.read_text()[-2000:])
            assert code == 0
            assert "serve.abandoned tasks=partner_sync" in s.log.read_text()
            s.start()  # starts cleanly afterwards
            code, took = s.signal_and_time()
            assert code == 0
        finally:
            s.close()
    finally:
        partner_api.close()


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'var' / 'gateway.db'}"
    partner_api = HangingPartner()
    try:
        partner = {"adapter": "http", "certificate": "var/keys/partners/demo-agency.crt",
                   "options": {"url": f"http://127.0.0.1:{partner_api.port}", "timeout": 120},
                   "sync": {"every_seconds": 1}}
        cfg = write_config(tmp_path, db_url, partners={"demo-agency": partner},
                           supervisor={"stop_grace_seconds": 60})
        assert gateway(cfg, "keys", "init").returncode == 0
        assert gateway(cfg, "db", "upgrade").returncode == 0
        s = Serve(tmp_path, cfg)
        try:
            proc = s.start()
            wait_for("the partner sync to hang on the partner", lambda: partner_api.accepted, 30)
            proc.send_signal(signal.SIGINT)
            wait_for("serve to begin stopping", lambda: "serve.stopping" in s.log.read_text(), 10)
            code, took = s.signal_and_time(signal.SIGINT)
            assert code == 130 and took < STOP_WITHIN
            assert "serve.stop_now" in s.log.read_text()
        finally:
            s.close()
    finally:
        partner_api.close()
