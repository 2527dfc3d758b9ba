"""Deliver batches as files into a directory (a mounted share, an SFTP-synced folder, tests).

Instruction documents (cancel, direct payment, message, ...) are written the same way into
``instruction_path`` (default ``<path>/instructions``), once per instruction id.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from adapters.base import Batch, OperationsMixin, Receipt, UpdatePage, bool_option
from adapters.statusfiles import INSTRUCTION_DIR, STATUS_DIR, read_local
from gateway.errors import ConfigError, DeliveryError

_CHUNK = 1 << 20
STALE_TEMP_SECONDS = 3600.0
_OUR_TEMP = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")  # what _write_atomically names its temp files
# link() not offered by the file system (some network shares): publish by rename instead
_NO_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS})


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryAdapter(OperationsMixin):
    """Writes each batch atomically as ``<path>/<filename>``; a batch id already there is delivered.

    The file name carries the batch id (the outbox idempotency key). A retry re-encrypts the batch,
    and CMS encryption is randomised, so the bytes differ: what proves an earlier delivery is the
    name, never the content. The atomic rename means a file under the final name is always whole.
    """

    name = "directory"
    retryable: tuple[type[BaseException], ...] = (OSError,)
    # Instructions travel as documents (``deliver_instruction``); refresh asks the agency to report again.
    capabilities: ClassVar[frozenset[str]] = frozenset({
        "deliver", "status_pull", "cancel", "direct_payment", "message", "long_term_monitoring", "refresh",
        "documents"})

    def __init__(self, partner_id: str, options: Mapping[str, Any]) -> None:
        self.partner_id = partner_id
        raw = options.get("path")
        if not isinstance(raw, (str, os.PathLike)) or not os.fspath(raw):
            raise ConfigError("the directory adapter needs option 'path' (a directory)",
                              key=f"partners.{partner_id}.options.path")
        self.path = Path(raw)
        # A missing folder is made unless the operator says it must exist (a mount point that is not
        # mounted should fail, retryably, rather than fill the local disk).
        self.create = bool_option(options, "create", f"partners.{partner_id}.options", default=True)
        # Instruction documents go to a folder of their own, so an agency never mistakes one for a case file.
        self.instruction_path = Path(options.get("instruction_path") or self.path / INSTRUCTION_DIR)
        self._swept: set[Path] = set()  # folders whose stale temp files this process has removed

    def deliver(self, batch: Batch) -> Receipt:
        """Write the batch file atomically, or confirm the earlier delivery of the same batch id."""
        return self._deliver_into(self.path, batch)

    def deliver_instruction(self, document: Batch) -> Receipt:
        """Write ``<instruction_path>/<instruction id>.xml.p7m`` once, like a batch."""
        return self._deliver_into(self.instruction_path, document)

    def _deliver_into(self, folder: Path, batch: Batch) -> Receipt:
        name = batch.filename
        # The filename comes from our own renderer, but a slash or dot name would escape or hide it.
        if not name or name != Path(name).name or name.startswith(".") or "\0" in name:
            raise DeliveryError(f"batch {batch.batch_id}: unsafe filename {name!r}", retryable=False)
        final = folder / name
        digest = hashlib.sha256(batch.payload).hexdigest()
        try:
            if self.create:
                folder.mkdir(parents=True, exist_ok=True)
            try:
                there = os.lstat(final)
            except FileNotFoundError:
                there = None
            if there is not None and not stat.S_ISREG(there.st_mode):
                # not ours (we write plain files): hashing a named pipe or a link to /dev/zero never ends
                raise DeliveryError(f"batch {batch.batch_id}: {final} is in the way and not a regular file (a link, "
                                    "folder, named pipe or device); move it away", retryable=True)
            if there is not None:
                return self._confirm_existing(batch, final, digest)
            if not self._write_atomically(final, batch.payload):
                return self._confirm_existing(batch, final, digest)  # written meanwhile by another worker
            return self._receipt(batch, final, digest)
        except OSError as exc:
            raise DeliveryError(f"batch {batch.batch_id}: cannot write {final}: {exc.strerror or exc}",
                                retryable=True) from exc

    def close(self) -> None:
        """Nothing to release: every delivery opens and closes its own files."""

    def fetch_updates(self, cursor: str | None) -> UpdatePage:
        """Status files the partner wrote into ``<path>/status/`` after the cursor (a file name)."""
        folder = self.path / STATUS_DIR
        try:
            updates, new_cursor = read_local(folder, cursor, f"partner {self.partner_id}")
        except OSError as exc:
            raise DeliveryError(f"partner {self.partner_id}: cannot read {folder}: {exc}", retryable=True) from exc
        return UpdatePage(updates=updates, cursor=new_cursor)

    def _confirm_existing(self, batch: Batch, final: Path, digest: str) -> Receipt:
        # Same batch id, delivered before (e.g. the answer was lost): confirm, never write twice. Its writer may have
        # died (or still be) between putting the name in place and flushing the folder: the entry is made durable
        # here before a receipt says the batch is there, as for a file written now.
        _fsync_dir(final.parent)
        return self._receipt(batch, final, _sha256_of(final))

    def _write_atomically(self, final: Path, payload: bytes) -> bool:
        """Write ``final`` whole or not at all, never over a file already there; False if another writer's
        file of the same name came first (that one is the delivery).

        The temp name is this writer's own and the file is published by a hard link, which fails when the name
        exists, instead of a rename, which replaces it: two workers can write the same batch (a node that stood
        still past its lease wakes while the worker that took the row over writes it), and with one shared temp
        name the late writer's bytes landed in the file that was already published, or its rename replaced the
        delivered file under the partner's feet. A file system without hard links gets the rename."""
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                os.replace(tmp, final)
        finally:
            with contextlib.suppress(OSError):  # the original error is the one worth reporting
                tmp.unlink(missing_ok=True)
        _fsync_dir(final.parent)
        if final.parent not in self._swept:
            self._swept.add(final.parent)
            self._remove_stale_temps(final.parent)
        return True

    @staticmethod
    def _remove_stale_temps(folder: Path) -> None:
        """Temp files a killed writer left behind (a live one writes in seconds). Once per folder and process: a
        partner's folder can hold a year of batch files, too many to list at every delivery."""
        cutoff = dt.datetime.now().timestamp() - STALE_TEMP_SECONDS
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if _OUR_TEMP.fullmatch(entry.name):
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            os.unlink(entry.path)

    def _receipt(self, batch: Batch, final: Path, digest: str) -> Receipt:
        # delivered_at is the file's mtime, so a re-delivery returns exactly the first receipt.
        mtime = final.stat().st_mtime
        return Receipt(
            batch_id=batch.batch_id,
            partner_reference=f"{self.partner_id}:{final.name}",
            delivered_at=dt.datetime.fromtimestamp(mtime, dt.timezone.utc),
            detail=f"sha256={digest}",
        )
