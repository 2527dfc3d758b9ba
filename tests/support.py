"""Small helpers shared by tests: polling with a deadline instead of sleeping, a test-driven clock, and a small
real file system to fill up."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import Connection

from gateway.bootstrap import App

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll until ``probe`` returns something truthy, or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Clock:
    """The app's clock, moved by the test instead of by sleeping."""

    def __init__(self, app: App) -> None:
        self.t = app.now()

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)

    def leases(self, conn: Connection) -> datetime:
        """For ``App.lease_now``: the app's leases follow this clock too (on PostgreSQL they go by the database
        server's clock, which a test cannot move)."""
        return self.t


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (``4m``) mounted at ``path`` for the block, to fill up (ENOSPC); the test is
    skipped where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def serve_process(cfg: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``gateway serve`` on ``cfg`` as a real process, its output in ``serve.log`` beside the config; killed at
    the end of the block if the test did not stop it."""
    log = cfg.parent / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.entrypoints.cli", "--config", str(cfg), "serve"],
                                stdout=out, stderr=subprocess.STDOUT, text=True, cwd=cfg.parent)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def listening_port(log: Path, front: str) -> int | None:
    """The port ``serve`` logged for ``front`` (``soap`` or ``web``) once it listens, else None. Tests let the
    server bind port 0 and read the port back: a port picked free beforehand can be taken by a parallel test
    before serve binds it."""
    found = re.search(rf"{front}\.listening url=https?://[^/\s]+:(\d+)/", log.read_text())
    return int(found.group(1)) if found else None


def wait_ready(proc: subprocess.Popen[str], log: Path, timeout: float = 30.0) -> None:
    """Wait for ``serve`` to log ``serve.ready``; fails with its log if it ended instead."""
    wait_for("serve to be ready", lambda: "serve.ready" in log.read_text() or proc.poll() is not None, timeout)
    assert proc.poll() is None, log.read_text()
