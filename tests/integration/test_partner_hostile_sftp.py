"""The sftp adapter against a partner's SFTP server that misbehaves: its disk fills mid-upload, it takes a
write and keeps less or nothing, it has no rename, its SFTP subsystem never answers, its host key changes.

A real asyncssh server on 127.0.0.1 (port 0) chrooted to a folder, with the misbehaviour in its SFTP
handler (or a real full tmpfs under it); the real adapter delivers to it. Asserted: what the dispatcher
acts on (the error, retried or not) and what is on the partner's disk afterwards.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from adapters.base import Batch
from adapters.sftp import SftpAdapter
from adapters.simulators.agency import Agency
from adapters.simulators.sftp_sim import SftpAgencySimulator, _Server
from gateway.errors import DeliveryError
from tests.support import small_tmpfs


def batch(size: int = 4096) -> Batch:
    return Batch(batch_id="B-1", partner_id="p", filename="B-1.xml.p7m", payload=os.urandom(size), claim_ids=[1])


class HostileSftp:
    """An SFTP server whose handler does ``mode``: short (keeps half of each upload), vanish (an upload is gone
    once closed), no_rename (rename and posix-rename unsupported), mute (the SFTP subsystem never answers)."""

    def __init__(self, root: Path, client_public_key: str, mode: str) -> None:
        self.root, self.mode = root, mode
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.authorized = asyncssh.import_authorized_keys(client_public_key)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def _factory(self) -> Any:
        root, mode = self.root, self.mode

        class Handler(asyncssh.SFTPServer):
            def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
                super().__init__(chan, chroot=os.fsencode(root))

            def write(self, file_obj: object, offset: int, data: bytes) -> Any:
                if mode == "short" and offset > 0:
                    return None  # said done, not kept
                if mode == "short":
                    data = data[: len(data) // 2]
                return super().write(file_obj, offset, data)

            def close(self, file_obj: object) -> Any:
                name = getattr(file_obj, "name", b"")
                super().close(file_obj)
                if mode == "vanish" and os.fsdecode(name).endswith(".part"):
                    os.remove(name)

            def stat(self, path: bytes) -> Any:
                attrs = asyncssh.SFTPAttrs.from_local(super().stat(path))
                if mode == "no_size":
                    attrs.size = None  # optional in SFTP: some servers leave it out
                return attrs

            def rename(self, oldpath: bytes, newpath: bytes) -> Any:
                if mode == "no_rename":
                    raise asyncssh.SFTPOpUnsupported("rename not supported")
                return super().rename(oldpath, newpath)

            def posix_rename(self, oldpath: bytes, newpath: bytes) -> Any:
                if mode == "no_rename":
                    raise asyncssh.SFTPOpUnsupported("posix-rename not supported")
                return super().posix_rename(oldpath, newpath)

        return Handler

    def __enter__(self) -> HostileSftp:
        self.root.mkdir(parents=True, exist_ok=True)
        self.thread.start()
        mute = self.mode == "mute"

        class Mute(asyncssh.SSHServerSession[bytes]):
            def subsystem_requested(self, subsystem: str) -> bool:
                return True  # and then never a byte: no SFTP version, no answer

        class Server(_Server):
            def session_requested(self) -> Any:
                return Mute()  # asked only without an sftp_factory: in mode mute

        async def listen() -> asyncssh.SSHAcceptor:
            return await asyncssh.listen("127.0.0.1", 0, server_host_keys=[self.host_key],
                                         server_factory=lambda: Server(self.authorized),
                                         sftp_factory=None if mute else self._factory())
        self.acceptor = asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)
        self.port = self.acceptor.get_port()
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close() -> None:
            self.acceptor.close()
            await self.acceptor.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    @property
    def host_key_line(self) -> str:
        return self.host_key.export_public_key().decode().strip()


@pytest.fixture
def client_key(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = tmp_path / "client"
    path.write_bytes(key.export_private_key())
    yield path, key.export_public_key().decode()


def adapter(port: int, key: Path, host_key: str, **options: Any) -> SftpAdapter:
    return SftpAdapter("p", {"host": "127.0.0.1", "port": port, "username": "gateway", "client_key": str(key),
                             "host_key": host_key, "timeout": 2, **options})


def visible(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("mode", ["short", "vanish"])
def test_an_upload_the_server_does_not_keep_whole_is_never_handed_over(tmp_path: Path, mode: str,
                                                                       client_key: tuple[Path, str]) -> None:
    """The server answers every write with OK but keeps half (or loses the file on close). Before, the short
    file (or the marker alone) was taken as the hand-over and the batch reported delivered. Now the size is
    checked before the marker: the attempt fails retryably, and neither the upload nor a marker is left."""
    key, public = client_key
    root = tmp_path / "root"
    with HostileSftp(root, public, mode) as server:
        a = adapter(server.port, key, server.host_key_line)
        with pytest.raises(DeliveryError, match="holds (nothing|2048 bytes) of the 4096 bytes") as err:
            a.deliver(batch(4096))
    assert err.value.retryable
    assert visible(root) == []  # no short batch under its name, no marker, no partial upload


def test_a_server_without_rename_is_dead_at_once_not_retried_for_a_day(tmp_path: Path,
                                                                      client_key: tuple[Path, str]) -> None:
    key, public = client_key
    root = tmp_path / "root"
    with HostileSftp(root, public, "no_rename") as server:
        a = adapter(server.port, key, server.host_key_line)
        with pytest.raises(DeliveryError, match="does not support an operation") as err:
            a.deliver(batch())
    assert err.value.retryable is False
    assert not (root / "B-1.xml.p7m").exists()


def test_a_server_whose_sftp_never_answers_ends_at_the_deadline(tmp_path: Path,
                                                              client_key: tuple[Path, str]) -> None:
    """SSH login works, the SFTP subsystem is started and never says a word: the call ends by itself."""
    key, public = client_key
    with HostileSftp(tmp_path / "root", public, "mute") as server:
        a = adapter(server.port, key, server.host_key_line, deadline=3)
        with pytest.raises(DeliveryError, match="deadline of 3 s") as err:
            a.deliver(batch())
    assert err.value.retryable


def test_a_disk_that_fills_mid_upload_leaves_no_partial_upload(tmp_path: Path,
                                                               client_key: tuple[Path, str]) -> None:
    """A real 1 MB tmpfs under the partner's folder and a 3 MB batch: the write fails (ENOSPC), the attempt
    fails retryably, and the partial upload is removed again: left there, it kept the disk full for the retry
    (and for ever: uploads no marker names are pruned only after marker_days + 1)."""
    key, public = client_key
    with small_tmpfs(tmp_path / "root", "1m") as root:
        with HostileSftp(root, public, "plain") as server:
            a = adapter(server.port, key, server.host_key_line)
            with pytest.raises(DeliveryError) as err:
                a.deliver(batch(3 * 1024 * 1024))
            assert err.value.retryable
            assert [p.name for p in root.iterdir() if p.is_file()] == []
            assert a.deliver(batch(100 * 1024)).detail.startswith("uploaded")  # room again: delivered


def test_a_host_key_that_changed_since_the_last_delivery_is_refused(tmp_path: Path,
                                                                    client_key: tuple[Path, str]) -> None:
    """The partner's server comes back with another host key (reinstalled, or someone in between): the gateway
    refuses before logging in, never learns the new key, and the row is dead for the operator."""
    key, public = client_key
    root = tmp_path / "root"
    first = SftpAgencySimulator(Agency("p"), root, public).start()
    pinned = first.host_key_line
    try:
        assert adapter(first.port, key, pinned).deliver(batch()).detail.startswith("uploaded")
    finally:
        first.stop()
    second = SftpAgencySimulator(Agency("p"), root, public).start()
    try:
        for attempt in range(2):  # the second attempt is refused as well: nothing was learnt
            with pytest.raises(DeliveryError, match="does not match the pinned key") as err:
                adapter(second.port, key, pinned).deliver(
                    Batch(batch_id=f"B-{attempt + 2}", partner_id="p", filename=f"B-{attempt + 2}.xml.p7m",
                          payload=b"x", claim_ids=[2]))
            assert err.value.retryable is False
    finally:
        second.stop()
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == ["B-1.xml.p7m"]


def test_a_server_that_reports_no_sizes_still_gets_its_batches(tmp_path: Path, client_key: tuple[Path, str]) -> None:
    """The size check cannot run where the server leaves the (optional) size out of its attributes: the upload is
    taken as whole, as before the check, rather than never delivered."""
    key, public = client_key
    root = tmp_path / "root"
    with HostileSftp(root, public, "no_size") as server:
        b = batch()
        assert adapter(server.port, key, server.host_key_line).deliver(b).detail.startswith("uploaded")
    assert (root / "B-1.xml.p7m").read_bytes() == b.payload
