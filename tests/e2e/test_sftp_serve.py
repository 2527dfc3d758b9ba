"""`gateway serve` with its SFTP server, driven by OpenSSH `sftp`, killed with SIGKILL mid-ingest, restarted:
every uploaded file ends with exactly one submission and one ack, and no claim is lost or stored twice."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.bootstrap import build_app
from gateway.store.schema import claims, submissions
from tests.conftest import write_config
from tests.sftp_support import ClientKey, client_csv, make_key, openssh_batch, sftp_clients_config, wait_for

GATEWAY = [sys.executable, "-m", "gateway.entrypoints.cli"]


class Served:
    def __init__(self, tmp_path: Path, cfg: Path) -> None:
        self.tmp_path, self.cfg, self.runs = tmp_path, cfg, 0
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = tmp_path / "serve-0.log"

    def start(self) -> int:
        """Start `gateway serve`; returns the SFTP port it logged."""
        self.runs += 1
        log_path = self.log_path = self.tmp_path / f"serve-{self.runs}.log"
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen([*GATEWAY, "--config", str(self.cfg), "serve"], stdout=log,
                                         stderr=subprocess.STDOUT, text=True, cwd=self.tmp_path)

        def port() -> int | None:
            assert self.proc is not None and self.proc.poll() is None, log_path.read_text()
            m = re.search(r"sftp\.listening host=\S+ port=(\d+)", log_path.read_text())
            return int(m.group(1)) if m and "serve.ready" in log_path.read_text() else None

        return wait_for("serve with its SFTP server", port)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[tuple[Served, ClientKey]]:
    key = make_key(tmp_path / "client-keys", "demo")
    cfg = write_config(tmp_path, db_url, sftp={"enabled": True, "port": 0}, clients=sftp_clients_config({"demo": key}),
                       dispatcher={"batch_size": 300, "poll_seconds": 0.2})
    for args in (("keys", "init"), ("db", "upgrade")):
        out = subprocess.run([*GATEWAY, "--config", str(cfg), *args], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    s = Served(tmp_path, cfg)
    try:
        yield s, key
    finally:
        if s.proc is not None and s.proc.poll() is None:
            s.stop()


def test_kill_9_during_processing_then_restart_loses_and_duplicates_nothing(
        served: tuple[Served, ClientKey], tmp_path: Path) -> None:
    s, key = served
    port = s.start()
    files = [client_csv(tmp_path / f"run-{i}.csv", 2500, f"K{i}") for i in range(5)]
    commands = [f"put {f} /upload/{f.name}" for f in files[:4]]
    commands += [f"put {files[4]} /upload/{files[4].name}.filepart",
                 f"rename /upload/{files[4].name}.filepart /upload/{files[4].name}"]
    out = openssh_batch(port, key.private, "demo", commands, tmp_path / "known_hosts")
    assert out.returncode == 0, out.stderr

    app = build_app(s.cfg)
    try:
        def processing() -> bool:
            with app.engine.connect() as conn:
                return bool(conn.execute(select(func.count()).select_from(submissions)
                                         .where(submissions.c.status == "processing")).scalar_one())

        wait_for("a submission being processed", processing)
        s.kill()  # SIGKILL in the middle of an ingest
        inbox = tmp_path / "inbox" / "demo"
        left = sorted(p.name for p in (inbox / "upload").iterdir())
        assert left, "the kill came after everything was done: nothing was tested"

        s.start()
        acks = {f.name: inbox / "ack" / f"{f.name}.ack.csv" for f in files}
        wait_for("every ack", lambda: all(a.exists() for a in acks.values()), timeout=90)
        wait_for("an empty upload folder", lambda: not any((inbox / "upload").iterdir()))
        for f in files:
            with open(acks[f.name], encoding="utf-8", newline="") as fh:
                outcomes = [r["outcome"] for r in csv.DictReader(fh, delimiter=";")]
            assert outcomes == ["accepted"] * 2500, f.name
        with app.engine.connect() as conn:
            subs = conn.execute(select(submissions.c.filename, submissions.c.status)).all()
            n_claims = conn.execute(select(func.count()).select_from(claims)).scalar_one()
        assert sorted(subs) == sorted((f.name, "completed") for f in files)
        assert n_claims == 5 * 2500
        assert sorted(p.name for p in (inbox / "ack").iterdir()) == sorted(f"{f.name}.ack.csv" for f in files)
        assert s.stop() == 0
    finally:
        app.close()
