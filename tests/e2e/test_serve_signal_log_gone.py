"""SIGHUP while serve's log folder is gone (a volume unmounted, the folder removed by hand): the reopen the
signal asks for cannot succeed, and that must not become an error of serve's event loop. The log handler
already carries such a failure (lines to stderr, one logs.file_unusable note); before, the SIGHUP callback
called the handler's reopen itself, outside its lock, and the FileNotFoundError came out as a loop failure
(supervisor.task_failed task=loop)."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for


def test_sighup_with_the_log_folder_gone_is_no_loop_failure(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, logging={"file": "var/log/gateway.log"})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    logdir = tmp_path / "var" / "log"
    with serve_process(cfg) as (proc, out):
        wait_for("serve to be ready", lambda: (logdir / "gateway.log").exists()
                 and "serve.ready" in (logdir / "gateway.log").read_text() or proc.poll() is not None)
        assert proc.poll() is None, out.read_text()
        shutil.rmtree(logdir)
        proc.send_signal(signal.SIGHUP)
        wait_for("the SIGHUP line on stderr", lambda: proc.poll() is not None
                 or "serve.signal signal=SIGHUP" in out.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = out.read_text()
    assert "logs.file_unusable" in text
    assert "task=loop" not in text and "Traceback" not in text, text
