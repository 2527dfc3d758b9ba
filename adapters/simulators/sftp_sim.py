"""The ``sftp`` partner simulator: an asyncssh SFTP server on loopback, chrooted to the agency's folder.

It runs its own event loop in a thread. The folder is a ``FolderAgency`` root: batches land in it,
status files are read from ``status/``. Faults apply per upload (taken when a file in the upload folder
is opened for writing): an error answer, a hang, a connection cut mid-transfer, or the rename done but
never answered. ``lose_answer_after(point)`` loses the answer to one step of a hand-over instead: an
upload closed, something renamed into a dot folder (the gateway's markers), a file renamed to a visible
name (its arrival). With ``move_away`` the partner takes every arriving file into ``processed/`` before
it answers, as agencies' inbound processing does; ``arrivals`` counts each visible name that arrived.
``refuse()`` closes the listener until ``accept()``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import asyncssh

from adapters.simulators.agency import Agency, Fault
from adapters.simulators.files import PROCESSED

Point = Literal["upload", "marker", "rename"]


class _Server(asyncssh.SSHServer):
    def __init__(self, authorized: asyncssh.SSHAuthorizedKeys) -> None:
        self.authorized = authorized

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == "gateway" and self.authorized.validate(key, "127.0.0.1", "127.0.0.1") is not None


def _sftp_factory(sim: SftpAgencySimulator) -> Any:
    agency, root = sim.agency, sim.root

    class AgencySFTP(asyncssh.SFTPServer):
        def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
            super().__init__(chan, chroot=os.fsencode(root))
            self.fault: Fault | None = None
            self.uploads: set[int] = set()  # write handles in the upload folder

        def where(self, path: bytes) -> tuple[str, ...]:
            """The path's parts below the root."""
            return Path(os.path.relpath(os.fsdecode(self.map_path(path)), root)).parts

        def lose_answer(self, point: Point) -> None:
            if sim.take_point(point):
                self.channel.get_connection().abort()  # done at the agency, but the answer never comes
                raise asyncssh.SFTPConnectionLost(f"simulated lost answer after {point}")

        async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
            upload = bool(pflags & asyncssh.FXF_WRITE) and len(self.where(path)) == 1
            if upload:
                self.fault = agency.faults.take()
                if self.fault in (Fault.ERROR_500, Fault.ERROR_503, Fault.RATE_LIMITED):
                    raise asyncssh.SFTPFailure(f"simulated failure {self.fault.value}")
                if self.fault is Fault.TIMEOUT:
                    await asyncio.sleep(agency.faults.hang_seconds)
                    self.channel.get_connection().abort()
                if self.fault is Fault.REFUSE:
                    self.channel.get_connection().abort()
            handle = super().open(path, pflags, attrs)
            if upload:
                self.uploads.add(id(handle))
            return handle

        def write(self, file_obj: object, offset: int, data: bytes) -> Any:
            if self.fault is Fault.DROP:
                self.channel.get_connection().abort()  # the upload breaks off mid-transfer
                raise asyncssh.SFTPConnectionLost("simulated drop")
            return super().write(file_obj, offset, data)

        async def close(self, file_obj: object) -> None:
            super().close(file_obj)
            if id(file_obj) in self.uploads:
                self.uploads.discard(id(file_obj))
                hold = sim.take_hold()
                if hold is not None:  # this session waits here, others go on (a writer that pauses)
                    hold[0].set()
                    await asyncio.get_running_loop().run_in_executor(None, hold[1].wait, 30.0)
                self.lose_answer("upload")

        def fsync(self, file_obj: object) -> Any:
            super().fsync(file_obj)
            sim.flushed.add(os.fsdecode(getattr(file_obj, "name")))

        def rename(self, oldpath: bytes, newpath: bytes) -> Any:
            super().rename(oldpath, newpath)
            self.renamed(oldpath, newpath)

        def posix_rename(self, oldpath: bytes, newpath: bytes) -> Any:
            os.replace(self.map_path(oldpath), self.map_path(newpath))
            self.renamed(oldpath, newpath)

        def renamed(self, oldpath: bytes, newpath: bytes) -> None:
            if os.fsdecode(self.map_path(oldpath)) not in sim.flushed:  # put in place before it was on the disk
                sim.unflushed.append("/".join(self.where(newpath)))
            parts = self.where(newpath)
            if any(p.startswith(".") for p in parts[:-1]):
                self.lose_answer("marker")
            elif len(parts) == 1 and not parts[0].startswith("."):
                sim.arrived(Path(os.fsdecode(self.map_path(newpath))))
                if self.fault is Fault.LOSE_ANSWER:
                    self.channel.get_connection().abort()  # renamed at the agency, but the answer never comes
                    raise asyncssh.SFTPConnectionLost("simulated lost answer")
                self.lose_answer("rename")

    return AgencySFTP


class SftpAgencySimulator:
    """An SFTP server for user ``gateway`` with one authorized client key."""

    def __init__(self, agency: Agency, root: Path, client_public_key: str, host: str = "127.0.0.1",
                 port: int = 0, *, move_away: bool = False) -> None:
        self.agency, self.root, self.host, self.port, self.move_away = agency, root, host, port, move_away
        self.arrivals: Counter[str] = Counter()  # every visible name that arrived, however often
        self.flushed: set[str] = set()  # files the client had the server flush to disk (fsync@openssh.com)
        self.unflushed: list[str] = []  # names put in place (renamed to) whose data the client never had flushed
        self._points: list[Point] = []
        self._hold: tuple[threading.Event, threading.Event] | None = None
        self._lock = threading.Lock()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.authorized = asyncssh.import_authorized_keys(client_public_key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp-sim", daemon=True)
        self._acceptor: asyncssh.SSHAcceptor | None = None

    def lose_answer_after(self, point: Point, times: int = 1) -> None:
        """Lose the answer the next ``times`` times the hand-over reaches ``point`` (in the order asked)."""
        with self._lock:
            self._points.extend([point] * times)

    def take_point(self, point: Point) -> bool:
        with self._lock:
            if self._points and self._points[0] == point:
                self._points.pop(0)
                return True
        return False

    def hold_after_upload(self) -> tuple[threading.Event, threading.Event]:
        """The next upload's session pauses once the file is closed: (reached, release) events."""
        self._hold = (threading.Event(), threading.Event())
        return self._hold

    def take_hold(self) -> tuple[threading.Event, threading.Event] | None:
        with self._lock:
            hold, self._hold = self._hold, None
            return hold

    def points_left(self) -> list[Point]:
        """Lost answers asked for that have not happened yet."""
        with self._lock:
            return list(self._points)

    def arrived(self, path: Path) -> None:
        """A file arrived under its final name; a moving partner takes it into ``processed/`` at once."""
        with self._lock:
            self.arrivals[path.name] += 1
            n = self.arrivals[path.name]
        if self.move_away:
            target = self.root / PROCESSED / (path.name if n == 1 else f"{path.name}.again-{n}")
            target.parent.mkdir(exist_ok=True)
            os.replace(path, target)

    def duplicate_arrivals(self) -> dict[str, int]:
        """Names that arrived more than once (must be empty)."""
        with self._lock:
            return {n: k for n, k in self.arrivals.items() if k != 1}

    @property
    def host_key_line(self) -> str:
        """The OpenSSH public key line the gateway pins."""
        return self.host_key.export_public_key().decode().strip()

    def start(self) -> SftpAgencySimulator:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        self.accept()
        return self

    def accept(self) -> None:
        async def listen() -> asyncssh.SSHAcceptor:
            return await asyncssh.listen(self.host, self.port, server_host_keys=[self.host_key],
                                         server_factory=lambda: _Server(self.authorized),
                                         sftp_factory=_sftp_factory(self), allow_scp=False)
        self._acceptor = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)
        self.port = self._acceptor.get_port()

    def refuse(self) -> None:
        if self._acceptor is not None:
            acceptor, self._acceptor = self._acceptor, None

            async def close() -> None:
                acceptor.close()
                await acceptor.wait_closed()
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)

    def stop(self) -> None:
        self.refuse()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
