"""The folder of `logging.file` removed while `gateway serve` runs (a cleanup job, a volume gone): serve goes on
taking files, its lines go to stderr meanwhile (one `logs.file_unusable` note), and once the folder is back the
file is written again. Before, the log handler's failed reopen was raised into whatever logged, also into the
supervisor's own error report, so the inbox task died without a word: files stayed in upload/ unprocessed while
serve looked alive."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_serve_goes_on_when_its_log_folder_is_removed(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False}, logging={"file": "var/log/gateway.log"})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    logdir, client = tmp_path / "var" / "log", tmp_path / "inbox" / "demo"
    demo = (ROOT / "examples" / "demo.csv").read_bytes()
    with serve_process(cfg) as (proc, out):
        wait_for("serve to be ready", lambda: proc.poll() is not None or (
            (logdir / "gateway.log").exists() and "serve.ready" in (logdir / "gateway.log").read_text()))
        assert proc.poll() is None, out.read_text()
        shutil.rmtree(logdir)
        (client / "upload" / "while-gone.csv").write_bytes(demo.replace(b"RE-2025-", b"G-"))
        wait_for("the ack while the log folder is gone",
                 lambda: (client / "ack" / "while-gone.csv.ack.csv").exists() or proc.poll() is not None)
        assert proc.poll() is None, out.read_text()
        logdir.mkdir()
        (client / "upload" / "after.csv").write_bytes(demo.replace(b"RE-2025-", b"A-"))
        wait_for("the next file's lines in the log file again", lambda: proc.poll() is not None or (
            (logdir / "gateway.log").exists() and "file=after.csv" in (logdir / "gateway.log").read_text()))
        assert proc.poll() is None, out.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    stderr = out.read_text()
    assert stderr.count("logs.file_unusable") == 1 and "ingest.received client=demo submission=" in stderr
    assert "Traceback" not in stderr and "logs.file_back" in (logdir / "gateway.log").read_text()
