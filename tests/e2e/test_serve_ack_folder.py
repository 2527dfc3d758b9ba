"""A client's ack folder replaced by a file while `gateway serve` runs: a file dropped meanwhile waits in
`upload/` (nothing stored, nothing answered), one line says why, and once the folder is back the file is
processed and answered. Before, the file was stored, its ack failed, and within a second it was set aside as
failed after three quick tries (the set-aside's own ack failed too, so its log line never came): the client got
no answer at all and the operator a file in `failed/`."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_a_file_waits_while_the_ack_folder_is_unusable(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False}, logging={"level": "DEBUG"},
                       supervisor={"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.3, "file_attempts": 3})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    client = tmp_path / "inbox" / "demo"
    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log)
        (client / "ack").mkdir(exist_ok=True)
        (client / "ack").rmdir()
        (client / "ack").write_text("not a folder")
        (client / "upload" / "waits.csv").write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
        wait_for("more tries than file_attempts", lambda: proc.poll() is not None or
                 "supervisor.still_failing task=inbox failures=5 error=ConfigError" in log.read_text())
        assert proc.poll() is None, log.read_text()
        assert (client / "upload" / "waits.csv").exists() and not (client / "failed").exists()
        assert "ingest.received" not in log.read_text()  # nothing stored that could not be answered
        (client / "ack").unlink()
        (client / "ack").mkdir()
        ack = client / "ack" / "waits.csv.ack.csv"
        wait_for("the ack once the folder is back", lambda: ack.exists() or proc.poll() is not None, 60)
        with open(ack, encoding="utf-8", newline="") as fh:
            outcomes = [row["outcome"] for row in csv.DictReader(fh, delimiter=";")]
        assert outcomes.count("accepted") == 7, outcomes
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = log.read_text()
    assert text.count("supervisor.task_failed task=inbox") == 1, text
    assert "inbox.set_aside" not in text and "supervisor.task_recovered task=inbox" in text


def test_an_archive_folder_that_is_a_file_does_not_fail_the_files(tmp_path: Path, db_url: str) -> None:
    """`archive/received.csv` cannot be written (a file named `archive` in its place): the files are taken, acked
    and logged as ingested, one line names the problem. Before, every file's ingest raised after it was stored
    and acked (a task_failed line, no serve.ingested line, the failure counted against a file already gone)."""
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    client = tmp_path / "inbox" / "demo"
    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log)
        (client / "archive").write_text("not a folder")
        for i in range(2):
            data = (ROOT / "examples" / "demo.csv").read_bytes().replace(b"RE-2025-", f"AR{i}-".encode())
            (client / "upload" / f"ar{i}.csv").write_bytes(data)
            wait_for(f"ar{i}.csv logged as ingested", lambda: proc.poll() is not None or
                     f"serve.ingested client=demo file=ar{i}.csv status=completed_with_errors" in log.read_text())
            assert proc.poll() is None, log.read_text()
        (client / "archive").unlink()
        (client / "upload" / "back.csv").write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
        wait_for("the archive index again", lambda: (client / "archive" / "received.csv").exists())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = log.read_text()
    assert text.count("inbox.archive_unusable") == 1 and "inbox.archive_back" in text, text
    assert "supervisor.task_failed" not in text, text
