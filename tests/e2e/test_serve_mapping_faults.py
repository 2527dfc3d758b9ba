"""Client mappings broken under a running `gateway serve` in ways an editor never does: a named pipe or a device
under a mapping's name, a mapping installed as a link pointed at a broken file, a client whose mapping does not
exist yet. Files are processed with the last good mapping, or held in the inbox until the mapping is mended.

Before, a named pipe `mappings/<any>.yaml` blocked the mapping watcher's read for ever while it held the
registry's lock, so every ingest of every client waited for ever too (no log line, no ack); a link pointed at a
broken file was a new, never-loaded mapping (the registry keyed files by their resolved name), so files were set
aside as failed within a second; and a client without a loadable mapping had its file set aside after three
quick tries instead of waiting for the operator's fix.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def outcomes(ack: Path) -> set[str]:
    with open(ack, encoding="utf-8", newline="") as fh:
        return {row["outcome"] for row in csv.DictReader(fh, delimiter=";")}


def test_pipes_devices_links_and_a_missing_mapping(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False}, logging={"level": "DEBUG"},
                       supervisor={"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.3, "file_attempts": 3},
                       clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"},
                                "late": {"name": "Late", "mapping": "late", "default_partner": "demo-agency"}},
                       routing=[{"partner": "demo-agency", "client": "demo"},
                                {"partner": "demo-agency", "client": "late"}])
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    mappings, inbox = tmp_path / "mappings", tmp_path / "inbox"
    good = (mappings / "demo.yaml").read_text()

    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log)

        def drop(client: str, name: str, *, ack: bool = True) -> None:
            data = (ROOT / "examples" / "demo.csv").read_bytes().replace(b"RE-2025-", f"{name[:-4]}-".encode())
            (inbox / client / "upload" / name).write_bytes(data)  # references of its own: not a duplicate
            if ack:
                wait_for(f"the ack of {client}/{name}", lambda: (inbox / client / "ack" / f"{name}.ack.csv").exists()
                         or proc.poll() is not None)
                assert proc.poll() is None, log.read_text()

        os.mkfifo(mappings / "stray.yaml")  # nobody ever writes into it
        wait_for("the pipe logged", lambda: "file=" + str(mappings / "stray.yaml") in log.read_text())
        (mappings / "demo.yaml").unlink()
        os.mkfifo(mappings / "demo.yaml")
        drop("demo", "during-pipe.csv")
        assert outcomes(inbox / "demo" / "ack" / "during-pipe.csv.ack.csv") >= {"accepted"}

        # installed as a link, then the link pointed at a broken file
        (mappings / "demo.yaml").unlink()
        (mappings / "demo-v1.yaml.txt").write_text(good)
        (mappings / "demo.yaml").symlink_to("demo-v1.yaml.txt")
        wait_for("the linked mapping loaded", lambda: "mapping.reloaded file=" in log.read_text())
        (mappings / "broken.txt").write_text("fields: [unclosed\n")
        tmp_link = mappings / ".demo.yaml.new"
        tmp_link.symlink_to("broken.txt")
        os.replace(tmp_link, mappings / "demo.yaml")
        wait_for("the broken link logged", lambda: "not valid YAML" in log.read_text())
        drop("demo", "during-broken-link.csv")
        assert outcomes(inbox / "demo" / "ack" / "during-broken-link.csv.ack.csv") >= {"accepted"}
        tmp_link.symlink_to("/dev/zero")
        os.replace(tmp_link, mappings / "demo.yaml")
        drop("demo", "during-zero-link.csv")
        assert outcomes(inbox / "demo" / "ack" / "during-zero-link.csv.ack.csv") >= {"accepted"}

        # a client whose mapping never loaded: its file waits (more failures than file_attempts), then goes through
        drop("late", "early.csv", ack=False)
        wait_for("more tries than file_attempts", lambda: proc.poll() is not None or
                 "supervisor.still_failing task=inbox failures=5 error=ConfigError" in log.read_text())
        assert proc.poll() is None, log.read_text()
        assert (inbox / "late" / "upload" / "early.csv").exists() and not (inbox / "late" / "failed").exists()
        assert not (inbox / "late" / "ack" / "early.csv.ack.csv").exists()
        (mappings / "late.yaml").write_text(good.replace("client: demo", "client: late"))
        wait_for("the held file's ack", lambda: (inbox / "late" / "ack" / "early.csv.ack.csv").exists()
                 or proc.poll() is not None, 60)
        assert outcomes(inbox / "late" / "ack" / "early.csv.ack.csv") >= {"accepted"}

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = log.read_text()
    assert "inbox.set_aside" not in text and "supervisor.gave_up" not in text


def test_a_mappings_folder_made_again_is_watched_again(tmp_path: Path, db_url: str) -> None:
    """`mappings/` removed and made again (a deploy that replaces the folder): a broken edit in the new folder is
    logged at once, and the fix too, without waiting for a client's file. Before, the watch stayed with the
    removed folder, so edits in the new one were seen only when the next file asked for its mapping."""
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    mappings = tmp_path / "mappings"
    good = (mappings / "demo.yaml").read_text()
    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log)

        def logged(text: str) -> bool:
            assert proc.poll() is None, log.read_text()
            return text in log.read_text()

        staged = tmp_path / "mappings.new"
        staged.mkdir()
        (staged / "demo.yaml").write_text(good)
        shutil.rmtree(mappings)
        os.rename(staged, mappings)
        wait_for("the new folder watched", lambda: logged("serve.mappings_folder_replaced"))
        (mappings / "demo.yaml").write_text("fields: [unclosed\n")
        wait_for("the broken edit logged without a file", lambda: logged("mapping.reload_failed"))
        # the new folder's own re-read may come before or after the broken edit: the fix is what is after it
        failed_at = log.read_text().index("mapping.reload_failed")
        (mappings / "demo.yaml").write_text(good.replace("version: 1", "version: 1\n# fixed"))
        wait_for("the fix logged", lambda: "mapping.reloaded" in log.read_text()[failed_at:])
        (tmp_path / "inbox" / "demo" / "upload" / "after.csv").write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
        ack = tmp_path / "inbox" / "demo" / "ack" / "after.csv.ack.csv"
        wait_for("the ack", lambda: ack.exists() or proc.poll() is not None)
        assert outcomes(ack) >= {"accepted"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
