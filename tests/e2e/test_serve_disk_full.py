"""A full disk under `gateway serve`: the inbox (acks) or the database's folder on a small tmpfs that is filled up
while a client's file comes in. The file is tried again for as long as the disk is full, never set aside as
failed and never acked as failed, no half-written ack or temp file stays behind, and once space is freed the
file is acked whole with every row, its claims stored once.

Real faults: a real tmpfs (needs root and mount; skipped where it cannot be mounted), real ENOSPC."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.sftp_support import client_csv
from tests.support import serve_process, small_tmpfs, wait_for

ROWS = 8000


@pytest.fixture
def tiny(tmp_path: Path, full: str) -> Iterator[Path]:
    """A small file system: the inbox's holds the upload; the database's the 8,000 rows' claims once freed."""
    with small_tmpfs(tmp_path / "tiny", "4m" if full == "inbox" else "64m") as mount:
        yield mount


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("full", ["inbox", "database"])
def test_a_full_disk_delays_the_ack_and_loses_nothing(tmp_path: Path, tiny: Path, full: str) -> None:
    db = (tiny if full == "database" else tmp_path / "var") / "gateway.db"
    cfg = write_config(tmp_path, f"sqlite:///{db}", paths={"inbox": str(tiny / "inbox")} if full == "inbox" else {},
                       supervisor={"backoff_base_seconds": 0.1, "backoff_max_seconds": 0.5, "file_attempts": 2})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    inbox = tiny / "inbox" if full == "inbox" else tmp_path / "inbox"
    upload, acks = inbox / "demo" / "upload", inbox / "demo" / "ack"
    upload.mkdir(parents=True, exist_ok=True)
    acks.mkdir(parents=True, exist_ok=True)
    source = client_csv(tmp_path / "big.csv", ROWS, "BIG")
    part = upload / ".big.csv.part"
    part.write_bytes(source.read_bytes())  # the upload itself fits; then the disk is full

    with serve_process(cfg) as (proc, log):
        wait_for("serve ready", lambda: "serve.ready" in log.read_text())
        filler = _fill(tiny)
        os.rename(part, upload / "big.csv")
        url = re.search(r"health\.listening url=(\S+)", log.read_text())
        assert url, log.read_text()

        def inbox_failures() -> float:
            body = urllib.request.urlopen(f"{url.group(1)}/metrics", timeout=10).read().decode()
            found = re.search(r'^gateway_task_failures_total\{task="inbox"\} (\S+)$', body, re.M)
            return float(found.group(1)) if found else 0.0
        # twice file_attempts and more: a full disk never counts against the file
        wait_for("the full disk met again and again", lambda: inbox_failures() >= 5, timeout=60)
        assert ("No space left on device" if full == "inbox" else "database or disk is full") in log.read_text()
        text = log.read_text()
        assert "inbox.set_aside" not in text and not (inbox / "demo" / "failed").exists(), text[-3000:]
        assert not (acks / "big.csv.ack.csv").exists()
        assert proc.poll() is None

        filler.unlink()
        ack = acks / "big.csv.ack.csv"
        wait_for("the ack once space is freed", ack.exists, timeout=90)
        assert [p.name for p in acks.iterdir()] == ["big.csv.ack.csv"]  # no temp file left behind
        with open(ack, encoding="utf-8", newline="") as fh:
            lines = list(csv.DictReader(fh, delimiter=";"))
        assert len(lines) == ROWS and {ln["outcome"] for ln in lines} == {"accepted"}
        subs = json.loads(gateway(cfg, "submissions", "list", "--json").stdout)
        assert [(s["filename"], s["status"], s["accepted"]) for s in subs] == [("big.csv", "completed", ROWS)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "supervisor.gave_up" not in log.read_text()
