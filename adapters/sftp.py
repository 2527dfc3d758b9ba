"""``sftp``: upload the signed and encrypted batch to a partner's SFTP server, read status files back.

asyncssh client with the partner's host key pinned (``host_key`` line or a ``known_hosts`` file; host
key checking is never switched off). A batch goes up under a temp name and is renamed when whole, so the
partner never picks up half a file; a batch whose final name already exists was delivered before (a
lost answer) and is confirmed, not sent twice. The dispatcher calls from a worker thread, so each call
runs its own short event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import posixpath
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from adapters.base import Batch, OperationsMixin, PartnerUpdate, Receipt, UpdatePage, decode_updates
from adapters.statusfiles import STATUS_DIR, pending_names
from gateway.errors import ConfigError, DeliveryError

T = TypeVar("T")


class SftpAdapter(OperationsMixin):
    """One SSH connection per call; batches into ``upload_dir``, status files from ``status_dir``."""

    name = "sftp"
    retryable: tuple[type[BaseException], ...] = (OSError, asyncssh.Error, asyncio.TimeoutError)

    def __init__(self, partner_id: str, options: Mapping[str, Any]) -> None:
        self.partner_id = partner_id
        key = f"partners.{partner_id}.options"
        self.host = str(options.get("host") or "")
        if not self.host:
            raise ConfigError("the sftp adapter needs option 'host'", key=f"{key}.host")
        self.port = int(options.get("port", 22))
        self.username = str(options.get("username") or "")
        if not self.username:
            raise ConfigError("the sftp adapter needs option 'username'", key=f"{key}.username")
        if options.get("host_key"):
            self.known_hosts: Any = ([asyncssh.import_public_key(str(options["host_key"]))], [], [])
        elif options.get("known_hosts"):
            self.known_hosts = str(options["known_hosts"])
        else:
            raise ConfigError("the sftp adapter needs the partner's host key pinned: option 'host_key' (an "
                              "OpenSSH public key line) or 'known_hosts' (a file)", key=f"{key}.host_key")
        client_key = options.get("client_key")
        if not client_key or not Path(str(client_key)).is_file():
            raise ConfigError(f"the sftp adapter needs option 'client_key' (a private key file), got {client_key!r}",
                              key=f"{key}.client_key")
        self.client_key = str(client_key)
        self.upload_dir = str(options.get("upload_dir", "."))
        self.status_dir = str(options.get("status_dir", STATUS_DIR))
        self.timeout = float(options.get("timeout", 30.0))

    def _run(self, what: str, work: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        async def session() -> T:
            async with asyncssh.connect(self.host, self.port, username=self.username, known_hosts=self.known_hosts,
                                        client_keys=[self.client_key], connect_timeout=self.timeout,
                                        login_timeout=self.timeout) as conn:
                async with conn.start_sftp_client() as sftp:
                    return await asyncio.wait_for(work(sftp), self.timeout)
        try:
            return asyncio.run(session())
        except asyncssh.HostKeyNotVerifiable as exc:
            raise DeliveryError(f"partner {self.partner_id}: {what}: host key of {self.host}:{self.port} does not "
                                f"match the pinned key", retryable=False) from exc
        except asyncssh.PermissionDenied as exc:
            raise DeliveryError(f"partner {self.partner_id}: {what}: login refused for {self.username}",
                                retryable=False) from exc
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise DeliveryError(f"partner {self.partner_id}: {what} on {self.host}:{self.port}: "
                                f"{type(exc).__name__}: {exc}", retryable=True) from exc

    def deliver(self, batch: Batch) -> Receipt:
        """Upload as ``.<name>.part`` and rename; an existing final name means delivered before."""
        name = batch.filename
        if not name or "/" in name or name.startswith("."):
            raise DeliveryError(f"batch {batch.batch_id}: unsafe filename {name!r}", retryable=False)
        final = posixpath.join(self.upload_dir, name)
        tmp = posixpath.join(self.upload_dir, f".{name}.part")

        async def upload(sftp: asyncssh.SFTPClient) -> str:
            if await sftp.exists(final):
                return "confirmed existing"
            async with sftp.open(tmp, "wb") as fh:
                await fh.write(batch.payload)
            try:
                await sftp.posix_rename(tmp, final)
            except asyncssh.SFTPOpUnsupported:
                await sftp.rename(tmp, final)
            return "uploaded"

        how = self._run(f"upload {final}", upload)
        return Receipt(batch_id=batch.batch_id, partner_reference=f"{self.partner_id}:{name}",
                       delivered_at=dt.datetime.now(dt.timezone.utc),
                       detail=f"{how} sha256={hashlib.sha256(batch.payload).hexdigest()}")

    def fetch_updates(self, cursor: str | None) -> UpdatePage:
        """Status files after the cursor (a file name) from the partner's status folder."""
        async def fetch(sftp: asyncssh.SFTPClient) -> tuple[list[PartnerUpdate], str | None]:
            if not await sftp.isdir(self.status_dir):
                return [], cursor
            names = pending_names(await sftp.listdir(self.status_dir), cursor)
            updates: list[PartnerUpdate] = []
            for n in names:
                async with sftp.open(posixpath.join(self.status_dir, n), "rb") as fh:
                    updates.extend(decode_updates(await fh.read()))
            return updates, names[-1] if names else cursor

        updates, new_cursor = self._run(f"read {self.status_dir}", fetch)
        return UpdatePage(updates=updates, cursor=new_cursor)

    def close(self) -> None:
        """Nothing held between calls."""
