"""A client's upload folder (or the whole inbox) removed, replaced by a file, or renamed away while `gateway serve`
runs: the watcher logs each problem once, goes on with the other clients, and once the folder is back watches it
again, so files dropped after the restore are taken (by their close event, not by a sweep hours later).

Before, the sweep's FileNotFoundError failed the inbox task again and again until the supervisor gave up and
stopped the whole gateway (exit 6); a folder deleted or renamed under its inotify watch was never watched again,
so files in the restored folder waited for the next sweep (`watcher.sweep_seconds`, an hour here).
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


def test_upload_folder_gone_replaced_renamed_and_back(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, watcher={"stable_seconds": 0.3, "sweep_seconds": 3600},
                       dispatcher={"enabled": False},
                       clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"},
                                "other": {"name": "Other", "mapping": "demo", "default_partner": "demo-agency"}},
                       routing=[{"partner": "demo-agency", "client": "demo"},
                                {"partner": "demo-agency", "client": "other"}])
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    inbox = tmp_path / "inbox"
    upload = inbox / "demo" / "upload"

    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log)

        def logged(text: str, count: int = 1) -> bool:
            assert proc.poll() is None, log.read_text()
            return log.read_text().count(text) >= count

        def drop(client: str, name: str) -> None:
            shutil.copy(ROOT / "examples" / "demo.csv", inbox / client / "upload" / name)
            wait_for(f"the ack of {client}/{name}", lambda: (inbox / client / "ack" / f"{name}.ack.csv").exists()
                     or proc.poll() is not None)
            assert proc.poll() is None, log.read_text()

        shutil.rmtree(upload)
        wait_for("the missing folder logged", lambda: logged("folder_unusable client=demo folder="))
        drop("other", "meanwhile.csv")  # the other client goes on
        upload.write_text("not a folder")
        wait_for("the file in its place logged", lambda: logged("error=NotADirectoryError"))
        upload.unlink()
        upload.mkdir()
        wait_for("the folder back", lambda: logged("watcher.folder_back client=demo"))
        drop("demo", "after-restore.csv")
        assert "watcher.complete client=demo file=after-restore.csv by=closed" in log.read_text()

        os.rename(upload, upload.with_name("upload.old"))  # renamed away, a new folder in its place
        upload.mkdir()
        drop("demo", "after-rename.csv")

        os.rename(inbox, tmp_path / "inbox.away")  # the whole inbox root, and back
        wait_for("both clients' folders missing", lambda: logged("folder_unusable client=other folder="))
        os.rename(tmp_path / "inbox.away", inbox)
        wait_for("both folders back", lambda: logged("watcher.folder_back client=other"))
        drop("demo", "after-root.csv")
        drop("other", "after-root.csv")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = log.read_text()
    # once per problem, not at every look: missing, a file in its place, missing with the whole root
    assert text.count("watcher.folder_unusable client=demo") == 3, text
    assert text.count("watcher.folder_unusable client=other") == 1, text
    assert "supervisor.task_failed" not in text and "supervisor.gave_up" not in text
