"""`gateway serve` at DEBUG with its log file beside the config, whose folder it watches: the log must not
feed itself (every line a file event, every event a line)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_sftp_serve import GATEWAY
from tests.support import wait_for


def test_a_debug_log_in_the_watched_config_folder_does_not_grow_by_itself(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}",
                       logging={"level": "DEBUG", "file": "serve.log"})
    for args in (("keys", "init"), ("db", "upgrade")):
        out = subprocess.run([*GATEWAY, "--config", str(cfg), *args], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "serve"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        wait_for("serve ready", lambda: log.exists() and "serve.ready" in log.read_text(encoding="utf-8"), 60)
        time.sleep(1)  # the start-up settles (a measuring window, not a wait for a state)
        before = log.stat().st_size
        time.sleep(3)
        grown = log.stat().st_size - before
        # An idle serve writes a few lines a second at DEBUG (polls); the loop wrote megabytes.
        assert grown < 200_000, f"the log grew by {grown} bytes in 3 s while idle"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
