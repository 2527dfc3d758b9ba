"""Is anyone still writing this file? Asked before a dropped file is taken and before it is removed.

Two ways to tell, best first:

- a read lease (``fcntl F_SETLEASE F_RDLCK`` on a read-only descriptor): the kernel refuses it with
  ``EAGAIN`` while any process has the file open for writing. It works for files the gateway's user
  owns (or with ``CAP_LEASE``) on local file systems. While a lease is held, another process opening the
  file for writing waits until it is released, so "no writer, then remove" cannot be overtaken;
- ``/proc/<pid>/fd``: every descriptor on the same inode, and its access mode from ``fdinfo``. The answer
  counts only if every process could be inspected.

When neither can tell (a file of another user, NFS, not Linux) the answer is ``None`` and the caller
relies on its quiet window alone. Writers on other machines (network file systems) are never seen.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_LEASE = hasattr(fcntl, "F_SETLEASE")
# A lease break signals the holder (SIGIO, whose default action ends the process). We hold leases for
# microseconds, but a writer opening the file just then must not kill the gateway: signal with SIGURG
# (ignored by default) and clear the owner as soon as the lease is taken.
_BREAK_SIGNAL = int(getattr(signal, "SIGURG", 0))


def identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What makes "the same file, unchanged": device, inode, size, modification time."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def has_writer(path: Path) -> bool | None:
    """True when a process has ``path`` open for writing, False when none has, None when it cannot be told."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with _read_lease(fd) as leased:
            if leased is not None:
                return not leased
        return _proc_writers(os.fstat(fd))
    finally:
        os.close(fd)


def remove_unless_written(path: Path, expected: os.stat_result) -> str | None:
    """Unlink ``path`` if it is still the file ``expected`` describes and no process writes to it.

    Returns None when removed (or already gone), else why it was left: ``changed`` or ``open_for_writing``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return "changed"  # a symlink or something else put in its place: not ours to remove
    try:
        st = os.fstat(fd)
        if identity(st) != identity(expected):
            return "changed"
        with _read_lease(fd) as leased:
            if leased is False or (leased is None and _proc_writers(st)):
                return "open_for_writing"
            # Under a lease no new writer can open it before the unlink; check the name still means it.
            if identity(os.stat(path, follow_symlinks=False)) != identity(st):
                return "changed"
            os.unlink(path)
        return None
    finally:
        os.close(fd)


@contextmanager
def _read_lease(fd: int) -> Iterator[bool | None]:
    """Yields True while a read lease is held, False when a writer prevents it, None when leases are unavailable."""
    if not _LEASE:
        yield None
        return
    try:
        if _BREAK_SIGNAL:
            fcntl.fcntl(fd, fcntl.F_SETSIG, _BREAK_SIGNAL)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        yield False if exc.errno in (errno.EAGAIN, errno.EBUSY) else None  # EACCES, EINVAL, ENOLCK: cannot tell
        return
    try:
        fcntl.fcntl(fd, fcntl.F_SETOWN, 0)  # no signal at all on a lease break
        yield True
    finally:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)


def _proc_writers(st: os.stat_result) -> bool | None:
    """Scan ``/proc/*/fd`` for a write handle on ``st``'s inode; None when some process could not be read."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    complete = True
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except FileNotFoundError:
            continue  # the process ended meanwhile
        except OSError:
            complete = False
            continue
        for fd in fds:
            try:
                target = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue  # closed meanwhile
            if (target.st_dev, target.st_ino) != (st.st_dev, st.st_ino):
                continue
            mode = _fd_access_mode(pid, fd)
            if mode is None:
                complete = False
            elif mode in (os.O_WRONLY, os.O_RDWR):
                return True
    return False if complete else None


def _fd_access_mode(pid: str, fd: str) -> int | None:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & os.O_ACCMODE
    except (OSError, ValueError, IndexError):
        pass
    return None
