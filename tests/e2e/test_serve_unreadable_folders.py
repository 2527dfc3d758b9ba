"""chmod 000 on a client's upload and ack folders under a running `gateway serve`. Tests run as root, and root reads
and writes through any mode, so serve runs here without capabilities (`setpriv`), as a service user would: then
the modes bite. The upload folder unreadable is logged once and watched again once readable; a file dropped while
the ack folder is unwritable waits and is answered once it is writable again."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_unreadable_upload_and_unwritable_ack_folders(tmp_path: Path, db_url: str) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False}, logging={"level": "DEBUG"},
                       supervisor={"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.3})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    client = tmp_path / "inbox" / "demo"
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([setpriv, "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-m",
                                 "gateway.entrypoints.cli", "--config", str(cfg), "serve"],
                                stdout=out, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        def logged(text: str) -> bool:
            assert proc.poll() is None, log.read_text()
            return text in log.read_text()

        wait_for("serve to be ready", lambda: logged("serve.ready"))
        (client / "upload").chmod(0)
        wait_for("the unreadable folder logged", lambda: logged("folder_unusable client=demo") and
                 logged("error=PermissionError"))
        (client / "upload").chmod(0o700)
        wait_for("the folder back", lambda: logged("watcher.folder_back client=demo"))
        (client / "ack").mkdir(exist_ok=True)
        (client / "ack").chmod(0)
        (client / "upload" / "held.csv").write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
        wait_for("the file held", lambda: logged("the ack folder cannot be used (Permission denied)"))
        assert (client / "upload" / "held.csv").exists()
        (client / "ack").chmod(0o700)
        wait_for("the ack once writable", (client / "ack" / "held.csv.ack.csv").exists)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        for folder in (client / "upload", client / "ack"):
            if folder.exists():
                folder.chmod(0o700)  # pytest must be able to remove tmp_path
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert text.count("watcher.folder_unusable") == 1 and "supervisor.gave_up" not in text
    assert "inbox.set_aside" not in text
