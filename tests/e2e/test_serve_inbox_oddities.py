"""Things that are not a client's CSV dropped into an upload folder of a running `gateway serve`: a named pipe,
links to devices, to /etc/passwd and out of the inbox, a folder named like a file, a name with a line break and
control characters, a name that is not UTF-8. None blocks the watcher or is read; each gets a failed ack or is
left alone with one log line, no log line carries a raw line break, and a good file beside them goes through.

Before, a name that is not UTF-8 failed the whole inbox task at every step (the database cannot hold the name:
UnicodeEncodeError) until the supervisor stopped the gateway (exit 6), and it did so again after every restart;
a name with a line break forged a second log line; a named pipe was logged as a complete upload.
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_pipes_links_and_odd_names_in_the_upload_folder(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False}, logging={"level": "DEBUG"})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    upload, acks = tmp_path / "inbox" / "demo" / "upload", tmp_path / "inbox" / "demo" / "ack"
    demo = (ROOT / "examples" / "demo.csv").read_bytes()

    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log)
        os.mkfifo(upload / "pipe.csv")
        for name, target in (("zero.csv", "/dev/zero"), ("random.csv", "/dev/urandom"), ("passwd.csv", "/etc/passwd"),
                             ("outside.csv", "../../../gateway.yaml")):
            (upload / name).symlink_to(target)
        (upload / "folder.csv").mkdir()
        (upload / "line\nbreak\x01.csv").write_bytes(demo)
        (upload / os.fsdecode(b"latin-\xe4\xfc.csv")).write_bytes(demo)
        (upload / "good.csv").write_bytes(demo)
        wait_for("the good file's ack", lambda: (acks / "good.csv.ack.csv").exists() or proc.poll() is not None)
        assert proc.poll() is None, log.read_text()
        for name in ("zero.csv", "random.csv", "passwd.csv", "outside.csv"):
            wait_for(f"the ack of the link {name}", (acks / f"{name}.ack.csv").exists)
            assert not os.path.lexists(upload / name)  # the link only, never what it points to
        for shown in ("line\\nbreak\\x01.csv", "latin-\\xe4\\xfc.csv"):
            ack = acks / f"{shown}.ack.csv"
            wait_for(f"the ack of {shown}", ack.exists)
            with open(ack, encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh, delimiter=";"))
            assert [(r["outcome"], r["codes"]) for r in rows] == [("failed", "invalid_file_name")], rows
        wait_for("the pipe noted", lambda: "watcher.not_a_file client=demo file=pipe.csv" in log.read_text())
        assert (upload / "pipe.csv").exists() and not (acks / "pipe.csv.ack.csv").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert (tmp_path / "gateway.yaml").exists() and Path("/etc/passwd").exists()
    text = log.read_text()
    assert "supervisor.task_failed" not in text, text
    assert text.count("watcher.not_a_file") == 1
    # every line is one of ours or a continuation of none: no raw line break from a file name
    assert all(line[:4].isdigit() for line in text.splitlines() if line), [
        line for line in text.splitlines() if line and not line[:4].isdigit()]
