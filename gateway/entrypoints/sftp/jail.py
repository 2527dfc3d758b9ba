"""One client's SFTP view: ``/upload`` (write), ``/ack``, ``/status``, ``/archive`` (read), nothing else.

Every path the client sends is normalised against a virtual root before anything touches the disk,
so ``..``, absolute paths and odd encodings all land inside the client's own folder or nowhere.
Symbolic links are never followed or created, directories never created, and a rename never leaves
``/upload``. Blocking bookkeeping (database writes) runs in threads, file I/O on the loop (local disk).

Uploads are all or nothing: a write that would take the file past the per-file limit or the client's
``/upload`` past its quota (counted across all open handles, see ``quota.py``) is refused with a status
naming size and limit, the handle is marked refused, its partial file is deleted, and the client gets a
``failed`` ack. Whatever the client sends on that handle afterwards (writes, a close) cannot revive it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import posixpath
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import asyncssh
from asyncssh import SFTPAttrs, SFTPName

from gateway.entrypoints.sftp.quota import QuotaExceeded, UploadSpace
from gateway.services.inbox import UploadBook, UploadBusy

log = logging.getLogger("gateway.sftp")

FOLDERS = ("upload", "ack", "status", "archive")
WRITE_FLAGS = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC | asyncssh.FXF_APPEND
# Bytes of an upload's name. The file system allows 255, but the gateway writes files named after it: the
# ack's temp file (".<name>.ack.csv.<host>-<pid>-<token>.tmp", up to 95 more with a 64-byte host name) and a
# set-aside copy; a 250-byte name made every ingest fail on its ack, forever, and the client never heard.
MAX_NAME = 160
# A read request names its length (up to 4 GiB) and asyncssh passes it on: 20 pipelined reads of a 50 MB file
# from a client that did not take the answers held 1.1 GB. A read gets at most MAX_READ bytes (a short read is
# normal in SFTP: clients ask for the rest; they ask 32-256 KiB anyway), and waits while more than MAX_UNSENT
# bytes of answers wait for the client.
MAX_READ = 256 * 1024
MAX_UNSENT = 1024 * 1024


@dataclass
class JailContext:
    """What every session shares: where the inboxes are, the upload record, limits, the ingest hand-off."""

    inbox: Path
    book: UploadBook
    on_complete: Callable[[str, str], None]
    max_file_bytes: Callable[[str], int]
    quota_bytes: Callable[[str], int]
    # Files and directory listings one client has open at once, over all its connections and sessions: each
    # open file is a descriptor of serve, and SFTP names no limit (one connection held 997 and took the rest).
    max_handles: int = 64
    space: UploadSpace = field(init=False)  # one reservation book for every session of the server
    handles: dict[str, int] = field(init=False, default_factory=dict)
    refusals: dict[str, int] = field(init=False, default_factory=dict)  # per configured client: bounded

    def __post_init__(self) -> None:
        self.space = UploadSpace(self.inbox)

    def take_handle(self, client: str) -> None:
        """Count one more open handle of ``client``; refused (SFTPFailure) at ``max_handles``."""
        if self.handles.get(client, 0) >= self.max_handles:
            refusals = self.refusals[client] = self.refusals.get(client, 0) + 1
            if str(refusals).rstrip("0") == "1":  # 1, 10, 100, ...: a flood is a few lines
                log.warning("sftp.handles_refused client=%s open=%d refused=%d", client, self.max_handles, refusals)
            raise asyncssh.SFTPFailure(f"too many open files: at most {self.max_handles} at once over all your "
                                       "connections; close some first")
        self.handles[client] = self.handles.get(client, 0) + 1

    def give_handle(self, client: str) -> None:
        left = self.handles.get(client, 0) - 1
        if left > 0:
            self.handles[client] = left
        else:
            self.handles.pop(client, None)


class _Handle:
    __slots__ = ("fd", "folder", "name", "write", "size", "append", "refused", "settled")

    def __init__(self, fd: int, folder: str, name: str, write: bool, size: int, append: bool = False) -> None:
        self.fd, self.folder, self.name, self.write, self.size = fd, folder, name, write, size
        self.append = append  # O_APPEND: the kernel writes at the end of the file whatever offset is asked
        self.refused: tuple[str, str] | None = None  # (code, message) once a write was refused
        self.settled = False  # the refused upload's file is gone, its ack written and its record forgotten

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """asyncssh answers a client's ranges request (its ``get`` asks first) by seeking to data and holes."""
        return os.lseek(self.fd, offset, whence)


def _closed_by_client(caller: FrameType) -> bool:
    """Whether a write handle's close means the client finished the file.

    asyncssh closes the open handles of a dropped session too, from its clean-up rather than from
    the client's close request, and only the latter means the file is whole. SCP (when allowed)
    closes in a ``finally``: whole when no exception is on its way out. If a later asyncssh renames
    these methods, every upload reads as incomplete: safe, and the tests fail loudly.
    """
    if caller.f_code.co_name == "_process_close":
        return True
    outer = caller.f_back
    if caller.f_code.co_name == "close" and outer is not None and outer.f_code.co_name == "_recv_file":
        return sys.exc_info()[0] is None
    return False


def _denied(what: str) -> asyncssh.SFTPError:
    return asyncssh.SFTPPermissionDenied(what)


class JailedSFTPServer(asyncssh.SFTPServer):
    """The SFTP session of one authenticated client."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], *, ctx: JailContext) -> None:
        super().__init__(chan)  # no asyncssh chroot: every path goes through _resolve below
        self.ctx = ctx
        self.client = str(chan.get_extra_info("username"))
        self.root = ctx.inbox / self.client
        self._reading = asyncio.Lock()
        for folder in FOLDERS:
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------------------------
    def _resolve(self, path: bytes) -> tuple[str | None, str | None]:
        """(folder, name) of a client path; (None, None) is the virtual root."""
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            raise asyncssh.SFTPNoSuchFile("file names must be UTF-8") from None
        if "\x00" in text or "\\" in text:
            raise asyncssh.SFTPNoSuchFile("invalid file name")
        parts = [p for p in posixpath.normpath(posixpath.join("/", text)).split("/") if p]
        if not parts:
            return None, None
        if parts[0] not in FOLDERS or len(parts) > 2:
            raise asyncssh.SFTPNoSuchFile("no such file")
        return parts[0], parts[1] if len(parts) == 2 else None

    def _file(self, path: bytes) -> tuple[str, str, Path]:
        folder, name = self._resolve(path)
        if folder is None or name is None:
            raise asyncssh.SFTPFailure("not a file")
        return folder, name, self.root / folder / name

    def map_path(self, path: bytes) -> bytes:
        raise _denied("not available")  # the base class's disk access is never used

    def realpath(self, path: bytes) -> bytes:
        text = path.decode("utf-8", "replace")
        return posixpath.normpath(posixpath.join("/", text)).replace("//", "/").encode()

    # -- metadata ---------------------------------------------------------------------------------
    def _lstat(self, path: bytes) -> os.stat_result:
        folder, name = self._resolve(path)
        local = self.root if folder is None else self.root / folder if name is None else self.root / folder / name
        try:
            st = os.lstat(local)
        except FileNotFoundError:
            raise asyncssh.SFTPNoSuchFile("no such file") from None
        if stat.S_ISLNK(st.st_mode) or (name is not None and not stat.S_ISREG(st.st_mode)):
            raise asyncssh.SFTPNoSuchFile("no such file")  # links and devices do not exist for clients
        return st

    def stat(self, path: bytes) -> SFTPAttrs:
        return SFTPAttrs.from_local(self._lstat(path))

    def lstat(self, path: bytes) -> SFTPAttrs:
        return SFTPAttrs.from_local(self._lstat(path))

    def fstat(self, file_obj: object) -> SFTPAttrs:
        return SFTPAttrs.from_local(os.fstat(self._handle(file_obj).fd))

    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        folder, _, local = self._file(path)
        if folder != "upload":
            raise _denied(f"/{folder} is read-only")
        self._lstat(path)
        if attrs.size is not None:
            # Answering "ok" and not doing it (as before) let a file keep the old bytes after a client's
            # shorter rewrite and be ingested so; truncating by name would bypass the upload's bookkeeping.
            raise asyncssh.SFTPOpUnsupported("changing a file's size by name is not supported: open it for "
                                             "writing with truncate, or truncate the open handle")
        self._set_times(local, attrs)

    def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self.setstat(path, attrs)

    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> Awaitable[None] | None:
        h = self._handle(file_obj)
        if not h.write:
            raise _denied("file not open for writing")
        if attrs.size is not None:
            return self._truncate(h, attrs.size, attrs)
        self._set_times(h.fd, attrs)
        return None

    async def _truncate(self, h: _Handle, size: int, attrs: SFTPAttrs) -> None:
        """The open upload cut (or extended) to ``size``, under the same limits as a write ending there."""
        if h.refused is not None:
            raise asyncssh.SFTPFailure(h.refused[1])
        if size > h.size:
            refused = self._limits(h, size)
            if refused is not None:
                await refused
        os.ftruncate(h.fd, size)
        h.size = size
        self._set_times(h.fd, attrs)

    @staticmethod
    def _set_times(target: Path | int, attrs: SFTPAttrs) -> None:
        # Clients preserve the modification time after an upload; permissions and owners stay ours.
        if attrs.atime is not None and attrs.mtime is not None:
            os.utime(target, (attrs.atime, attrs.mtime))

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        folder, name = self._resolve(path)
        if name is not None:
            raise asyncssh.SFTPNoSuchFile("not a directory")
        here = self.root if folder is None else self.root / folder
        # A listing is read whole before the first name goes out: asyncssh reads a listing 128 names at a time
        # and keeps it open between the client's reads, which would hold a descriptor per open listing.
        names = [SFTPName(b".", attrs=SFTPAttrs.from_local(os.stat(here))),
                 SFTPName(b"..", attrs=SFTPAttrs.from_local(os.stat(self.root)))]
        if folder is None:
            names += [SFTPName(f.encode(), attrs=SFTPAttrs.from_local(os.stat(self.root / f))) for f in FOLDERS]
        else:
            with os.scandir(here) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    hidden = folder != "upload" and entry.name.startswith(".")  # our own temp files
                    if stat.S_ISREG(st.st_mode) and not hidden:
                        names.append(SFTPName(os.fsencode(entry.name), attrs=SFTPAttrs.from_local(st)))
        self.ctx.take_handle(self.client)  # a listing read in part is kept (memory) until the client closes it
        try:
            for listed in names:
                yield listed
        finally:
            self.ctx.give_handle(self.client)

    def statvfs(self, path: bytes) -> asyncssh.SFTPVFSAttrs:
        raise asyncssh.SFTPOpUnsupported("statvfs is not supported")

    # -- files ------------------------------------------------------------------------------------
    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        folder, name, local = self._file(path)
        if not pflags & WRITE_FLAGS:
            self.ctx.take_handle(self.client)
            try:
                fd = self._os_open(local, os.O_RDONLY)
            except BaseException:
                self.ctx.give_handle(self.client)
                raise
            return _Handle(fd, folder, name, False, 0)
        if folder != "upload":
            raise _denied(f"/{folder} is read-only: upload files to /upload")
        if len(name.encode()) > MAX_NAME:
            raise asyncssh.SFTPFailure(f"file name too long: at most {MAX_NAME} bytes (UTF-8)")
        if any(ord(c) < 32 for c in name):
            raise asyncssh.SFTPFailure("invalid file name: control characters (line breaks, tabs) are not allowed")
        self.ctx.take_handle(self.client)
        try:
            return await self._open_upload(name, local, pflags)
        except BaseException:
            self.ctx.give_handle(self.client)
            raise

    async def _open_upload(self, name: str, local: Path, pflags: int) -> object:
        try:
            await asyncio.to_thread(self.ctx.book.begin_write, self.client, name)
        except UploadBusy as exc:
            raise asyncssh.SFTPFailure(f"refused: {exc}") from None
        flags = os.O_RDWR if pflags & asyncssh.FXF_READ else os.O_WRONLY
        for bit, flag in ((asyncssh.FXF_CREAT, os.O_CREAT), (asyncssh.FXF_TRUNC, os.O_TRUNC),
                          (asyncssh.FXF_EXCL, os.O_EXCL), (asyncssh.FXF_APPEND, os.O_APPEND)):
            if pflags & bit:
                flags |= flag
        try:
            fd = self._os_open(local, flags)
        except BaseException:
            await asyncio.to_thread(self._abandon, name, local)
            raise
        size = os.fstat(fd).st_size
        self.ctx.space.opened(self.client, name, size)
        log.info("sftp.upload_start client=%s file=%s", self.client, name)
        return _Handle(fd, "upload", name, True, size, bool(pflags & asyncssh.FXF_APPEND))

    def _abandon(self, name: str, local: Path) -> None:
        if local.exists():
            self.ctx.book.end_write(self.client, name, complete=False)
        else:
            self.ctx.book.removed(self.client, name)

    @staticmethod
    def _os_open(local: Path, flags: int) -> int:
        try:
            fd = os.open(local, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o640)
        except FileNotFoundError:
            raise asyncssh.SFTPNoSuchFile("no such file") from None
        except FileExistsError:
            raise asyncssh.SFTPFailure("file exists") from None
        except OSError as exc:  # ELOOP for a symlink, EISDIR, EACCES: the same answer, no details
            raise _denied(f"cannot open: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _denied("not a regular file")
        return fd

    def _handle(self, file_obj: object) -> _Handle:
        assert isinstance(file_obj, _Handle)
        return file_obj

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        h = self._handle(file_obj)
        # One read at a time per session: the answer is queued before the next read looks at the queue.
        async with self._reading:
            while self.channel.get_write_buffer_size() > MAX_UNSENT:
                if self.channel.is_closing():
                    raise asyncssh.SFTPConnectionLost("connection closed")
                await asyncio.sleep(0.02)
            return os.pread(h.fd, min(size, MAX_READ), offset)

    def write(self, file_obj: object, offset: int, data: bytes) -> int | Awaitable[int]:
        h = self._handle(file_obj)
        if not h.write:
            raise _denied("file not open for writing")
        if h.refused is not None:
            raise asyncssh.SFTPFailure(h.refused[1])
        start = h.size if h.append else offset
        refused = self._limits(h, start + len(data))
        if refused is not None:
            return refused
        try:
            written = os.pwrite(h.fd, data, offset)
            if written != len(data):  # what is not written now would be a hole the client never hears of
                raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            # The gateway's disk is full (or failing): the bytes are lost, so the upload is dead like a refused
            # one. Without this a client closing after the failed write (OpenSSH `sftp`, asyncssh's put do)
            # made the truncated file a complete upload, and it was ingested.
            return self._refuse(h, "storage_error", f"the gateway could not store this upload "
                                f"({exc.strerror or 'write failed'}); it was discarded: send it again later")
        h.size = max(h.size, start + written)
        return written

    def _limits(self, h: _Handle, end: int) -> Awaitable[int] | None:
        """None if the file may reach byte ``end``; else the refusal (awaited, it discards and raises)."""
        # Both checks come before the disk grows: a write at offset 10 GB is refused, not stored sparse.
        limit = self.ctx.max_file_bytes(self.client)
        if end > limit:
            return self._refuse(h, "file_too_large",
                                f"file too large: {end} bytes would exceed the limit of {limit} bytes per file")
        try:
            self.ctx.space.extend(self.client, h.name, end, self.ctx.quota_bytes(self.client))
        except QuotaExceeded as exc:
            return self._refuse(h, "quota_exceeded", f"quota exceeded: {exc}")
        return None

    def _refuse(self, h: _Handle, code: str, message: str) -> Awaitable[int]:
        h.refused = (code, message)  # from here on every request on this handle gets the same answer
        log.warning("sftp.upload_refused client=%s file=%s code=%s reason=%s", self.client, h.name, code, message)
        return self._discard_then_fail(h)

    async def _discard_then_fail(self, h: _Handle) -> int:
        await self._discard(h)
        assert h.refused is not None
        raise asyncssh.SFTPFailure(h.refused[1])

    async def _discard(self, h: _Handle) -> None:
        """Delete a refused upload's partial file, then write its ack and forget it (again on close if that failed)."""
        if h.settled or h.refused is None:
            return
        # The record still says "writing", so nobody else (watcher, ingest, rename, remove) touches this name.
        (self.root / "upload" / h.name).unlink(missing_ok=True)
        self.ctx.space.closed(self.client, h.name, None)
        try:
            await asyncio.to_thread(self.ctx.book.refused, self.client, h.name, *h.refused)
        except Exception as exc:  # the database, most likely: the file is gone anyway, the close tries again
            log.error("sftp.refusal_record_failed client=%s file=%s error=%s", self.client, h.name,
                      type(exc).__name__)
            return
        h.settled = True

    def fsync(self, file_obj: object) -> None:
        os.fsync(self._handle(file_obj).fd)

    def close(self, file_obj: object) -> Awaitable[None] | None:
        h = self._handle(file_obj)
        kept = os.fstat(h.fd).st_size if h.write else 0
        os.close(h.fd)
        self.ctx.give_handle(self.client)
        if not h.write:
            return None
        by_client = _closed_by_client(sys._getframe(1))
        if h.refused is not None:
            return self._closed_refused(h, by_client)
        self.ctx.space.closed(self.client, h.name, kept)
        return self._closed(h.name, by_client)

    async def _closed_refused(self, h: _Handle, by_client: bool) -> None:
        await self._discard(h)
        log.info("sftp.upload_discarded client=%s file=%s", self.client, h.name)
        if by_client and h.refused is not None:
            # A client that ignored the failed write learns here that closing does not make the file count;
            # a session being torn down must not raise, or asyncssh would leave its other handles open.
            raise asyncssh.SFTPFailure(h.refused[1])

    async def _closed(self, name: str, complete: bool) -> None:
        ready = await asyncio.to_thread(self.ctx.book.end_write, self.client, name, complete=complete)
        log.info("sftp.upload_%s client=%s file=%s", "closed" if complete else "incomplete", self.client, name)
        if ready:
            self.ctx.on_complete(self.client, name)

    # -- names ------------------------------------------------------------------------------------
    async def remove(self, path: bytes) -> None:
        folder, name, local = self._file(path)
        if folder != "upload":
            raise _denied(f"/{folder} is read-only")
        self._lstat(path)
        try:
            self.ctx.book.check_free(self.client, name)
        except UploadBusy as exc:
            raise asyncssh.SFTPFailure(f"refused: {exc}") from None
        local.unlink()
        await asyncio.to_thread(self.ctx.book.removed, self.client, name)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._rename(oldpath, newpath, overwrite=False)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._rename(oldpath, newpath, overwrite=True)

    async def _rename(self, oldpath: bytes, newpath: bytes, *, overwrite: bool) -> None:
        src_folder, old, src = self._file(oldpath)
        dst_folder, new, dst = self._file(newpath)
        if src_folder != "upload" or dst_folder != "upload":
            raise _denied("files can only be renamed inside /upload")
        if len(new.encode()) > MAX_NAME:
            raise asyncssh.SFTPFailure(f"file name too long: at most {MAX_NAME} bytes (UTF-8)")
        if any(ord(c) < 32 for c in new):
            raise asyncssh.SFTPFailure("invalid file name: control characters (line breaks, tabs) are not allowed")
        self._lstat(oldpath)
        try:
            self.ctx.book.check_free(self.client, old)
            self.ctx.book.check_free(self.client, new)
        except UploadBusy as exc:
            raise asyncssh.SFTPFailure(f"refused: {exc}") from None
        if os.path.lexists(dst):
            if not overwrite:
                raise asyncssh.SFTPFailure("target exists")
            if not stat.S_ISREG(os.lstat(dst).st_mode):
                raise _denied("target is not a regular file")
        os.rename(src, dst)
        if await asyncio.to_thread(self.ctx.book.renamed, self.client, old, new):
            log.info("sftp.upload_renamed client=%s from=%s file=%s", self.client, old, new)
            self.ctx.on_complete(self.client, new)

    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        raise _denied("folders cannot be created")

    def rmdir(self, path: bytes) -> None:
        raise _denied("folders cannot be removed")

    def readlink(self, path: bytes) -> bytes:
        raise asyncssh.SFTPNoSuchFile("no such link")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise _denied("links cannot be created")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise _denied("links cannot be created")
