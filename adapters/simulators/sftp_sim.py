"""The ``sftp`` partner simulator: an asyncssh SFTP server on loopback, chrooted to the agency's folder.

It runs its own event loop in a thread. The folder is a ``FolderAgency`` root: batches land in it,
status files are read from ``status/``. Faults apply per upload (taken when a file is opened for
writing): an error answer, a hang, a connection cut mid-transfer, or the rename done but never answered.
``refuse()`` closes the listener until ``accept()``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import asyncssh

from adapters.simulators.agency import Agency, Fault


class _Server(asyncssh.SSHServer):
    def __init__(self, authorized: asyncssh.SSHAuthorizedKeys) -> None:
        self.authorized = authorized

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == "gateway" and self.authorized.validate(key, "127.0.0.1", "127.0.0.1") is not None


def _sftp_factory(agency: Agency, root: Path) -> Any:
    class AgencySFTP(asyncssh.SFTPServer):
        def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
            super().__init__(chan, chroot=os.fsencode(root))
            self.fault: Fault | None = None

        async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
            if pflags & asyncssh.FXF_WRITE:
                self.fault = agency.faults.take()
                if self.fault in (Fault.ERROR_500, Fault.ERROR_503):
                    raise asyncssh.SFTPFailure(f"simulated failure {self.fault.value}")
                if self.fault is Fault.TIMEOUT:
                    await asyncio.sleep(agency.faults.hang_seconds)
                    self.channel.get_connection().abort()
                if self.fault is Fault.REFUSE:
                    self.channel.get_connection().abort()
            return super().open(path, pflags, attrs)

        def write(self, file_obj: object, offset: int, data: bytes) -> Any:
            if self.fault is Fault.DROP:
                self.channel.get_connection().abort()  # the upload breaks off mid-transfer
                raise asyncssh.SFTPConnectionLost("simulated drop")
            return super().write(file_obj, offset, data)

        def posix_rename(self, oldpath: bytes, newpath: bytes) -> Any:
            os.replace(self.map_path(oldpath), self.map_path(newpath))
            if self.fault is Fault.LOSE_ANSWER:
                self.channel.get_connection().abort()  # renamed at the agency, but the answer never comes
                raise asyncssh.SFTPConnectionLost("simulated lost answer")
            return None

    return AgencySFTP


class SftpAgencySimulator:
    """An SFTP server for user ``gateway`` with one authorized client key."""

    def __init__(self, agency: Agency, root: Path, client_public_key: str, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.agency, self.root, self.host, self.port = agency, root, host, port
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.authorized = asyncssh.import_authorized_keys(client_public_key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp-sim", daemon=True)
        self._acceptor: asyncssh.SSHAcceptor | None = None

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
                                         sftp_factory=_sftp_factory(self.agency, self.root), allow_scp=False)
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
