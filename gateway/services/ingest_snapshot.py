"""The one copy of a client's file an ingest reads: hashed, stored and read from the same bytes.

An ingest reads its file three times: to hash it (duplicates are found by the hash), to store its raw bytes
(encrypted, what a resume starts from), and row by row. A file rewritten in place meanwhile (``cp b.csv a.csv``
over a watched file, a share, a cron job) was hashed and stored as one file and read as another: its claims and
ack mixed both, the stored bytes no longer showed what the claims came from, and a read that met the end of a
half-rewritten file acked it as complete. So the file is copied once into a private spool file while it is
hashed, and that copy is what is stored and read. A file that changes while it is copied (its size, modification
or change time moved) is not taken: ``FileChanging``, and the watcher offers it again once it has stayed the same.

The copy is plain client data on the gateway's own disk: mode 0600 in ``var/spool/ingest``, deleted when the
ingest ends, and a copy a killed process left behind is deleted by the next ``serve`` (``clear_spool``). Each copy
is locked (``flock``) by the ingest reading it, so a ``serve`` starting beside a running ``gateway ingest`` never
deletes that one.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

SPOOL = Path("spool") / "ingest"
CHUNK_BYTES = 1 << 20


class FileChanging(GatewayError):
    """The file changed while it was copied for its ingest: it is still being written. Not the file's fault and
    not a failure: nothing was recorded; the file is taken once it stays the same."""

    def __init__(self, name: str) -> None:
        self.file = name
        super().__init__(f"{os.path.basename(name)}: the file changed while it was read (it is still being written): "
                         "it is taken once it stays the same")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


@contextmanager
def snapshot(var_dir: Path, path: Path, name: str) -> Iterator[tuple[Path, str, int]]:
    """A private copy of ``path`` with its SHA-256 and size, deleted at the end. ``name`` is the client's, for errors."""
    spool = var_dir / SPOOL
    spool.mkdir(parents=True, exist_ok=True, mode=0o700)
    copy = spool / f"{os.getpid()}-{secrets.token_hex(8)}"
    out = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(out, fcntl.LOCK_EX)  # a serve clearing leftovers passes a copy in use (``clear_spool``)
        h, size = hashlib.sha256(), 0
        with open(path, "rb") as src:
            before = os.fstat(src.fileno())
            while chunk := src.read(CHUNK_BYTES):
                h.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
            after = os.fstat(src.fileno())
        if not _same(before, after) or size != after.st_size:
            raise FileChanging(name)
        yield copy, h.hexdigest(), size
    finally:
        os.close(out)
        copy.unlink(missing_ok=True)


def clear_spool(var_dir: Path) -> int:
    """Delete the copies a killed or crashed ingest left behind (plain client data); returns how many."""
    spool = var_dir / SPOOL
    try:
        entries = list(spool.iterdir())
    except FileNotFoundError:
        return 0
    cleared = 0
    for entry in entries:
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # gone meanwhile, or not a file of ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # an ingest in another process reads it now
        else:
            entry.unlink(missing_ok=True)
            cleared += 1
        finally:
            os.close(fd)
    if cleared:
        log.info("ingest.spool_cleared files=%d", cleared)
    return cleared
