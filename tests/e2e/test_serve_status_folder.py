"""A client's status folder (`inbox/<client>/status`, where the gateway writes status files) replaced by a file
while `gateway serve` runs: that client's status files wait, one line says why, and once the folder is back the
next file holds every change since the last one. Before, the status-file task failed at that client's folder
every round until the supervisor gave up and stopped the whole gateway (exit 6), and after a restart again."""

from __future__ import annotations

import csv
import shutil
import signal
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_status_files_wait_while_the_folder_is_a_file(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False}, sftp={"status_interval_seconds": 0.5})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    client = tmp_path / "inbox" / "demo"
    status = client / "status"
    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log)
        for _ in range(100):  # serve makes the folder again at its next look: put the file there between two
            shutil.rmtree(status, ignore_errors=True)
            try:
                status.write_text("not a folder")
                break
            except IsADirectoryError:
                continue
        assert status.is_file()
        (client / "upload" / "a.csv").write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
        wait_for("the ack", lambda: (client / "ack" / "a.csv.ack.csv").exists() or proc.poll() is not None)
        wait_for("the folder's trouble logged", lambda: proc.poll() is not None or
                 "status.folder_unusable client=demo" in log.read_text())
        assert proc.poll() is None, log.read_text()
        status.unlink()
        wait_for("the folder back", lambda: proc.poll() is not None or "status.folder_back client=demo" in log.read_text())
        wait_for("a status file with the claims' changes", lambda: any(status.glob("status_*.csv")))
        refs = set()
        for f in status.glob("status_*.csv"):
            with open(f, encoding="utf-8", newline="") as fh:
                refs |= {r["reference"] for r in csv.DictReader(fh, delimiter=";")}
        assert "RE-2025-0001" in refs, refs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = log.read_text()
    assert text.count("status.folder_unusable") == 1 and "supervisor.task_failed task=status_files" not in text, text
