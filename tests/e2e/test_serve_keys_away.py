"""The data key file moved away (or broken) under a running `gateway serve`: the keys it loaded stay in use, one
`keys.reload_failed` line says so, and clients' files are taken as before. Before, the cipher looked at the
file once a second and, finding it gone, raised KeyStoreError in whatever encrypted next: a client's file
failed (an ERROR line each time, counted against the file towards being set aside) and went through on a retry
within the second, until the next look."""

from __future__ import annotations

import csv
import os
import signal
import time
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_files_go_through_while_the_key_file_is_away(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    client, keys = tmp_path / "inbox" / "demo", tmp_path / "var" / "keys"
    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log)
        os.rename(keys, keys.with_name("keys.away"))
        for i in range(3):
            # the cipher looks at its file at most once a second: let that second pass before each file
            t0 = time.monotonic()
            wait_for("the cipher's look-again interval", lambda: time.monotonic() - t0 > 1.1)
            data = (ROOT / "examples" / "demo.csv").read_bytes().replace(b"RE-2025-", f"K{i}-".encode())
            (client / "upload" / f"k{i}.csv").write_bytes(data)
            ack = client / "ack" / f"k{i}.csv.ack.csv"
            wait_for(f"the ack of k{i}.csv", lambda: ack.exists() or proc.poll() is not None)
            assert proc.poll() is None, log.read_text()
            with open(ack, encoding="utf-8", newline="") as fh:
                assert [r["outcome"] for r in csv.DictReader(fh, delimiter=";")].count("accepted") == 7
        os.rename(keys.with_name("keys.away"), keys)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = log.read_text()
    assert "supervisor.task_failed" not in text, text
    assert text.count("keys.reload_failed") == 1, text


def test_serve_without_its_data_key_file_exits_1_at_start(tmp_path: Path, db_url: str) -> None:
    """Before, serve loaded the keys at the first file: it logged serve.ready and then failed every client's file
    (set aside after three tries with an internal_error ack)."""
    cfg = write_config(tmp_path, db_url)
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    (tmp_path / "var" / "keys" / "data-keys.json").unlink()
    with serve_process(cfg) as (proc, log):
        assert proc.wait(60) == 1
    assert "no data key file" in log.read_text() and "serve.ready" not in log.read_text()
