"""A directory partner's folder with things in it the partner should not have put there, under a running
`gateway serve`: a named pipe among the status files, a named pipe where the next batch file goes. Neither is
read; each is a retryable failure naming the file, and once it is moved away the sync and the delivery go on.

Before, the partner's status sync opened the pipe and waited for a writer for ever, and the delivery took the
pipe for an earlier delivery of the same batch and hashed it for ever: both hung without a log line (only
`/healthz` turned stale after `health.stale_seconds`)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_pipes_in_the_partner_folder_are_refused_not_read(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, partners={"demo-agency": {
        "adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
        "options": {"path": "var/partners/demo-agency"}, "sync": {"every_seconds": 0.5}}})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    partner = tmp_path / "var" / "partners" / "demo-agency"
    (partner / "status").mkdir(parents=True)
    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log)

        def logged(text: str) -> bool:
            assert proc.poll() is None, log.read_text()
            return text in log.read_text()

        os.mkfifo(partner / "status" / "0001-pipe.json")
        os.symlink("/dev/zero", partner / "status" / "0002-zero.json")
        wait_for("the pipe refused", lambda: logged("status file 0001-pipe.json is not a regular file"))
        os.mkfifo(partner / "deliver-1-demo-agency-1.xml.p7m")
        (tmp_path / "inbox" / "demo" / "upload" / "demo.csv").write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
        wait_for("the pipe in the batch's way refused", lambda: logged("deliver-1-demo-agency-1.xml.p7m is in the way"))

        (partner / "status" / "0001-pipe.json").unlink()
        wait_for("the link to /dev/zero refused", lambda: logged("status file 0002-zero.json is not a regular file"))
        (partner / "status" / "0002-zero.json").unlink()
        (partner / "deliver-1-demo-agency-1.xml.p7m").unlink()
        wait_for("the batch delivered", lambda: logged("dispatch.delivered outbox=1"))
        assert (partner / "deliver-1-demo-agency-1.xml.p7m").is_file()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
