"""A client's upload folder on a read-only mount (a share exported read-only, a disk remounted read-only after
errors): the file is stored and answered once, and left where it is with one `inbox.kept` line. Before, the
failed removal after the ack was taken for a failure of the file: it was offered again and again (a duplicate
each time), then set aside into failed/, which failed too across file systems (EXDEV), so two ERROR lines came
every second or two for as long as serve ran."""

from __future__ import annotations

import csv
import signal
import subprocess
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, small_tmpfs, wait_for, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_a_file_in_a_read_only_upload_folder_is_taken_once(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False},
                       supervisor={"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.3, "file_attempts": 3})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    client = tmp_path / "inbox" / "demo"
    with small_tmpfs(client / "upload", "4m") as upload:
        (upload / "ro.csv").write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
        remount = subprocess.run(["mount", "-o", "remount,ro", str(upload)], capture_output=True)
        assert remount.returncode == 0, remount.stderr
        with serve_process(cfg) as (proc, log):
            wait_ready(proc, log)
            ack = client / "ack" / "ro.csv.ack.csv"
            wait_for("the ack", lambda: ack.exists() or proc.poll() is not None)
            wait_for("the file kept", lambda: proc.poll() is not None or "inbox.kept client=demo file=ro.csv" in
                     log.read_text())
            assert proc.poll() is None, log.read_text()
            with open(ack, encoding="utf-8", newline="") as fh:
                assert [r["outcome"] for r in csv.DictReader(fh, delimiter=";")].count("accepted") == 7
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        assert (upload / "ro.csv").exists()
    text = log.read_text()
    assert "reason=cannot_remove (Read-only file system)" in text
    assert "supervisor.task_failed" not in text and "ingest.duplicate" not in text, text
