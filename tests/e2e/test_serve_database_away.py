"""`gateway serve` when its PostgreSQL is away: at start (the machine booting, the server restarting) it waits and
says so instead of ending with a traceback, and starts once the database answers; a stop signal meanwhile ends
it cleanly; connections cut while it runs cost retries, not files.

The database is the real PostgreSQL behind a TCP relay on loopback that the test closes (connections refused,
open ones cut) and opens again: what a server restart or a failover does to the gateway's connections."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.sftp_support import client_csv
from tests.support import serve_process, wait_for


class Relay:
    """Forwards a loopback port to the database while open; closed, it refuses and cuts every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:  # wakes the thread blocked in accept(): a plain close would leave the port listening
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=10)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select(timeout=1.0):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            a.close()
            b.close()


@pytest.fixture
def relayed(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, Relay]]:
    if db_url.startswith("sqlite"):
        pytest.skip("a database server that goes away: PostgreSQL")
    url = make_url(db_url)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    cfg = write_config(tmp_path, url.set(port=relay.port).render_as_string(hide_password=False),
                       dispatcher={"poll_seconds": 0.2, "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.5})
    relay.open()
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    relay.close()
    try:
        yield cfg, relay
    finally:
        relay.close()


def _drop(cfg: Path, name: str, rows: int) -> Path:
    upload = cfg.parent / "inbox" / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    client_csv(upload / f".{name}.part", rows, prefix=name.removesuffix(".csv"))
    os.rename(upload / f".{name}.part", upload / name)
    return cfg.parent / "inbox" / "demo" / "ack" / f"{name}.ack.csv"


def _handed_over(cfg: Path) -> int:
    out = gateway(cfg, "claims", "list", "--json", "--status", "handed_over", "--limit", "10000")
    return len(json.loads(out.stdout)) if out.returncode == 0 else 0


def test_serve_waits_for_the_database_and_survives_its_restart(relayed: tuple[Path, Relay]) -> None:
    cfg, relay = relayed
    with serve_process(cfg) as (proc, log):
        wait_for("serve to say the database is away", lambda: log.read_text().count("serve.database_unavailable") >= 2)
        assert proc.poll() is None, log.read_text()
        assert "Traceback" not in log.read_text()
        relay.open()
        wait_for("serve to start once the database answers", lambda: "serve.ready" in log.read_text(), timeout=60)
        wait_for("the first file's ack", _drop(cfg, "first.csv", 50).exists, timeout=60)

        relay.close()  # every pooled connection cut, new ones refused, for a while
        ack = _drop(cfg, "second.csv", 3000)
        threading.Event().wait(3.0)
        assert not ack.exists() and proc.poll() is None, log.read_text()
        relay.open()
        wait_for("the second file's ack after the database came back", ack.exists, timeout=90)

        # The first file's ack is moved into place in the transaction that records its outcome, just before the
        # commit: a cut in between leaves its submission processing and the file in upload/, offered again (after
        # its backoff, up to supervisor.backoff_max_seconds) and finished then.
        def subs() -> list[tuple[str, str, int]] | None:
            found = sorted((s["filename"], s["status"], s["accepted"])
                           for s in json.loads(gateway(cfg, "submissions", "list", "--json").stdout))
            return found if found == [("first.csv", "completed", 50), ("second.csv", "completed", 3000)] else None
        wait_for("both files' submissions completed", subs, timeout=90)
        wait_for("every claim handed over", lambda: _handed_over(cfg) == 3050, timeout=90)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert "Traceback" not in text and "supervisor.gave_up" not in text, text


def test_a_stop_signal_while_the_database_is_away_ends_serve_cleanly(relayed: tuple[Path, Relay]) -> None:
    cfg, _ = relayed
    with serve_process(cfg) as (proc, log):
        wait_for("serve to say the database is away", lambda: "serve.database_unavailable" in log.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, log.read_text()
    assert "serve.stopped" in log.read_text() and "Traceback" not in log.read_text()
    out = gateway(cfg, "claims", "list")  # a one-shot command says what is wrong in one line
    assert out.returncode == 1 and out.stderr.startswith("database error: ") and "Traceback" not in out.stderr


class Silent:
    """A loopback port that takes every connection and never answers: a hung server, or a proxy whose backend is
    gone. The driver's connection attempt waits on it until its connect timeout."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def test_a_stop_signal_while_the_database_never_answers_ends_serve(tmp_path: Path, db_url: str) -> None:
    """A database that takes the connection and stays silent: each attempt ends at the connect timeout and the log
    says why, and a SIGTERM in the middle of an attempt ends serve at once (not when the attempt gives up)."""
    if db_url.startswith("sqlite"):
        pytest.skip("a database server that does not answer: PostgreSQL")
    silent = Silent()
    cfg = write_config(tmp_path, make_url(db_url).set(port=silent.port).render_as_string(hide_password=False))
    assert gateway(cfg, "keys", "init").returncode == 0
    try:
        with serve_process(cfg) as (proc, log):
            wait_for("serve to say the database does not answer",
                     lambda: "serve.database_unavailable" in log.read_text(), timeout=30)
            wait_for("the next connection attempt", lambda: len(silent.held) >= 2, timeout=10)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0, log.read_text()
    finally:
        silent.close()
    text = log.read_text()
    assert "timeout" in text and "serve.stopped" in text and "Traceback" not in text, text
