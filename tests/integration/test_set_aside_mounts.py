"""Setting a file aside when `upload/` is a file system of its own (a mounted share): `failed/` is on another one,
so a rename cannot move the file (EXDEV). Before, set_aside raised there every time, so a file that had to be set
aside was offered, failed and set aside again for as long as the gateway ran, and the client got no ack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.bootstrap import App
from gateway.services.set_aside import set_aside
from tests.support import small_tmpfs

ROOT = Path(__file__).resolve().parents[2]


def test_a_file_is_set_aside_across_file_systems(app: App) -> None:
    upload = app.config.inbox_dir / "demo" / "upload"
    with small_tmpfs(upload, "4m"):
        path = upload / "poison.csv"
        shutil.copy(ROOT / "examples" / "demo.csv", path)
        target = set_aside(app, "demo", path, "test", attempts=3)
        assert target is not None and target.read_bytes() == (ROOT / "examples" / "demo.csv").read_bytes()
        assert not path.exists() and target.parent.name == "failed"
        assert not list(target.parent.glob(".*"))  # no temporary copy left
    assert (app.config.inbox_dir / "demo" / "ack" / "poison.csv.ack.csv").exists()


def test_a_file_that_cannot_leave_a_read_only_share_leaves_no_copy_in_failed(app: App) -> None:
    """upload/ a read-only mount of its own: the copy into failed/ is made, but the original cannot be removed.
    The file stays (offered again later), so its copy must not stay in failed/: one more per try, for ever."""
    upload = app.config.inbox_dir / "demo" / "upload"
    with small_tmpfs(upload, "4m"):
        path = upload / "poison.csv"
        shutil.copy(ROOT / "examples" / "demo.csv", path)
        done = subprocess.run(["mount", "-o", "remount,ro", str(upload)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("cannot remount the tmpfs read-only here")
        for _ in range(2):
            with pytest.raises(OSError):
                set_aside(app, "demo", path, "test", attempts=3)
        assert path.exists()
        assert list((app.config.inbox_dir / "demo" / "failed").iterdir()) == []


def test_a_file_that_cannot_be_moved_aside_is_still_answered(app: App) -> None:
    """failed/ cannot be made (a file in its place): the client gets its failed ack all the same, and the file
    stays in upload/ to be set aside at a later try. Before, the move came first and raised, so the client was
    never answered; a stop between the move and the ack did the same for good."""
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    (app.config.inbox_dir / "demo" / "failed").write_text("not a folder")
    path = upload / "poison.csv"
    shutil.copy(ROOT / "examples" / "demo.csv", path)
    with pytest.raises(OSError):
        set_aside(app, "demo", path, "test", attempts=3)
    ack = app.config.inbox_dir / "demo" / "ack" / "poison.csv.ack.csv"
    assert ack.exists() and "internal_error" in ack.read_text(encoding="utf-8-sig") and path.exists()
