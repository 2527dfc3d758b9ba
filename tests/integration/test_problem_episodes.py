"""A lasting problem is said once when it starts and once when it is over: the upload folder watcher, the status and
archive folders and the console's accept loop share one rule (``gateway.episodes``). Two problems taking turns are
two lines, not one per look; the real watcher on a real folder that goes away and comes back as a file."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.entrypoints.watcher import InboxWatcher
from gateway.episodes import RECENT_PROBLEMS, Episodes


def _lines(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if word in r.getMessage()]


def test_an_upload_folder_whose_problem_takes_turns_is_logged_once_per_problem(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Gone, then a file in its place, then gone again... (a share remounted, a script that recreates the path
    wrongly): the watcher remembered only the latest problem and said each again at every turn."""
    caplog.set_level(logging.INFO, logger="gateway.entrypoints.watcher")
    folder = tmp_path / "inbox" / "demo" / "upload"
    watcher = InboxWatcher({"demo": folder}, 0.3)
    watcher.start()
    try:
        for _ in range(4):
            shutil.rmtree(folder)
            watcher.sweep()  # FileNotFoundError
            folder.write_text("not a folder")
            watcher.sweep()  # NotADirectoryError
            assert watcher.folders_changed()  # in trouble: serve's loop sweeps at once
            folder.unlink()
            folder.mkdir()
        unusable = _lines(caplog, "watcher.folder_unusable")
        assert len(unusable) == 2, unusable
        assert any("FileNotFoundError" in u for u in unusable) and any("NotADirectoryError" in u for u in unusable)
        watcher.sweep()
        [back] = _lines(caplog, "watcher.folder_back")
        assert "client=demo" in back
        assert not watcher.folders_changed()
    finally:
        watcher.stop()


def test_episodes_say_news_once_and_the_end_once() -> None:
    trouble = Episodes()
    assert trouble.ok("a") is None and not trouble.troubled()
    assert trouble.failed("a", "gone") and not trouble.failed("a", "gone")
    assert trouble.failed("a", "a file") and not trouble.failed("a", "gone")  # taking turns: quiet
    assert trouble.troubled("a") and not trouble.troubled("b") and trouble.troubled()
    lasted = trouble.ok("a")
    assert lasted is not None and lasted >= 0 and not trouble.troubled()
    assert trouble.failed("a", "gone")  # a new episode: news again
    for i in range(RECENT_PROBLEMS * 3):  # bounded: a new problem at every look keeps the memory small
        trouble.failed("a", f"problem {i}")
    assert trouble.failed("a", "problem 0")  # pushed out long ago: said again


def test_the_console_out_of_descriptors_says_so_once_and_says_when_it_accepts_again() -> None:
    """Real descriptors used up in a child process (its own RLIMIT_NOFILE), a real client waiting in the backlog:
    ten failing accepts are one line, the first accept afterwards another."""
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("accept_probe.py"))], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert "RESULT accepted=1" in out.stdout, out.stdout
    failed = [line for line in out.stdout.splitlines() if "web.accept_failed" in line]
    assert len(failed) == 1 and "Too many open files" in failed[0], out.stdout
    assert len([line for line in out.stdout.splitlines() if "web.accept_back" in line]) == 1, out.stdout
