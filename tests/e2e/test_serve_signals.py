"""Signals a service manager or an operator sends besides SIGTERM: `gateway serve` notes them and goes on serving.

Before, SIGHUP (logrotate's postrotate, `systemctl reload`), SIGUSR1 and SIGUSR2 ended the process at once by
their default action, without a log line; systemd counts a SIGHUP death as a clean exit and does not restart it.
SIGPIPE is ignored (Python's default), which the later lines here prove too.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_hup_usr1_usr2_and_pipe_leave_serve_running(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, logging={"file": "var/log/gateway.log"})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    logfile = tmp_path / "var" / "log" / "gateway.log"
    with serve_process(cfg) as (proc, out):
        wait_for("serve to be ready", lambda: logfile.exists() and "serve.ready" in logfile.read_text()
                 or proc.poll() is not None)
        assert proc.poll() is None, out.read_text()
        os.replace(logfile, logfile.with_name("gateway.log.1"))  # logrotate moves the file, then sends SIGHUP
        for sig in (signal.SIGPIPE, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            proc.send_signal(sig)
            if sig != signal.SIGPIPE:
                wait_for(f"the {sig.name} line", lambda: proc.poll() is not None or (
                    logfile.exists() and f"serve.signal signal={sig.name}:" in logfile.read_text()))
                assert proc.poll() is None, f"serve ended on {sig.name}: {out.read_text()}"
        shutil.copy(ROOT / "examples" / "demo.csv", tmp_path / "inbox" / "demo" / "upload" / "after.csv")
        wait_for("the ack of a file dropped after the signals",
                 (tmp_path / "inbox" / "demo" / "ack" / "after.csv.ack.csv").exists)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = logfile.read_text()
    assert "serve.signal signal=SIGHUP: log file reopened" in text and "serve.stopped exit_code=0" in text
