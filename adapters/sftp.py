"""``sftp``: upload the signed and encrypted batch to a partner's SFTP server, read status files back.

asyncssh client with the partner's host key pinned (``host_key`` line or a ``known_hosts`` file; host
key checking is never switched off). A batch goes up under a temp name, a marker for its batch id is
left in the gateway's own folder on the server, and only then is the upload renamed to its final name
(``adapters.sftp_handover``): a retry after a lost answer finishes or confirms the hand-over and never
sends the batch twice, also to a partner that moves files away on arrival. Instruction documents take
the same way into ``instruction_dir``. The dispatcher calls from a worker thread, so each call runs its
own short event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import posixpath
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import asyncssh

from adapters.base import Batch, OperationsMixin, PartnerUpdate, Receipt, UpdatePage
from adapters.sftp_handover import DAY, MARKER_DIR, hand_over, log, prune, unsafe
from adapters.statusfiles import (INSTRUCTION_DIR, MAX_STATUS_BYTES, STATUS_DIR, check_size, decode_status_file,
                                 pending_names, within_budget)
from gateway.errors import ConfigError, DeliveryError

T = TypeVar("T")


class SftpAdapter(OperationsMixin):
    """One SSH connection per call; batches into ``upload_dir``, status files from ``status_dir``."""

    name = "sftp"
    retryable: tuple[type[BaseException], ...] = (OSError, asyncssh.Error, asyncio.TimeoutError)
    # Instructions travel as documents (``deliver_instruction``); refresh asks the agency to report again.
    capabilities: ClassVar[frozenset[str]] = frozenset({
        "deliver", "status_pull", "cancel", "direct_payment", "message", "long_term_monitoring", "refresh",
        "documents"})

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
        self.instruction_dir = str(options.get("instruction_dir") or posixpath.join(self.upload_dir, INSTRUCTION_DIR))
        self.timeout = float(options.get("timeout", 30.0))
        # ``timeout`` bounds the connect, the login and the SFTP work each; ``deadline`` the whole session, the
        # start of the SFTP subsystem included (a server that logs in and then never answers the SFTP init).
        self.deadline = float(options.get("deadline", 4 * self.timeout))
        if self.timeout <= 0 or self.deadline <= 0:
            raise ConfigError("options 'timeout' and 'deadline' must be positive seconds", key=f"{key}.deadline")
        # The gateway's own folder on the partner server (never touched by the partner): one marker per batch.
        self.marker_dir = str(options.get("marker_dir") or MARKER_DIR)
        # Markers older than this are pruned, so it must outlast any retry of a batch, a manual one included;
        # 0 keeps them for ever.
        self.marker_days = float(options.get("marker_days", 60))
        if self.marker_days < 0:
            raise ConfigError(f"option 'marker_days' must be 0 (never prune) or more days, got {self.marker_days}",
                              key=f"{key}.marker_days")
        self._next_prune = 0.0  # monotonic; the first delivery after start prunes, then once a day

    def _run(self, what: str, work: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        async def session() -> T:
            async with asyncssh.connect(self.host, self.port, username=self.username, known_hosts=self.known_hosts,
                                        client_keys=[self.client_key], connect_timeout=self.timeout,
                                        login_timeout=self.timeout) as conn:
                async with conn.start_sftp_client() as sftp:
                    return await asyncio.wait_for(work(sftp), self.timeout)
        try:
            return asyncio.run(asyncio.wait_for(session(), self.deadline))
        except TimeoutError as exc:
            raise DeliveryError(f"partner {self.partner_id}: {what} on {self.host}:{self.port}: no answer within the "
                                f"deadline of {self.deadline:g} s", retryable=True) from exc
        except asyncssh.HostKeyNotVerifiable as exc:
            raise DeliveryError(f"partner {self.partner_id}: {what}: host key of {self.host}:{self.port} does not "
                                f"match the pinned key", retryable=False) from exc
        except asyncssh.SFTPOpUnsupported as exc:
            # The hand-over needs rename (and a server that lacks an operation will not grow it by the next try):
            # dead at once for the operator, not retried for a day.
            raise DeliveryError(f"partner {self.partner_id}: {what}: the SFTP server on {self.host}:{self.port} "
                                f"does not support an operation the gateway needs ({str(exc.reason)[:100]})",
                                retryable=False) from exc
        except asyncssh.PermissionDenied as exc:
            raise DeliveryError(f"partner {self.partner_id}: {what}: login refused for {self.username}",
                                retryable=False) from exc
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise DeliveryError(f"partner {self.partner_id}: {what} on {self.host}:{self.port}: "
                                f"{type(exc).__name__}: {exc}", retryable=True) from exc

    def deliver(self, batch: Batch) -> Receipt:
        """Hand the batch over by upload, marker and rename; a retry finishes or confirms, never sends twice."""
        return self._hand_over(self.upload_dir, batch, make_dir=False)

    def deliver_instruction(self, document: Batch) -> Receipt:
        """Hand an instruction document over into ``instruction_dir`` by the same marker protocol as a batch."""
        return self._hand_over(self.instruction_dir, document, make_dir=True)

    def _hand_over(self, folder: str, batch: Batch, *, make_dir: bool) -> Receipt:
        name = batch.filename
        if unsafe(name) or unsafe(batch.batch_id):
            raise DeliveryError(f"batch {batch.batch_id}: unsafe filename {name!r} or batch id", retryable=False)
        final = posixpath.join(folder, name)

        async def upload(sftp: asyncssh.SFTPClient) -> str:
            if make_dir:
                await sftp.makedirs(folder, exist_ok=True)
            # Instruction ids and batch ids never collide (an instruction id starts with its operation),
            # so both share the one marker folder.
            return await hand_over(sftp, upload_dir=folder, marker_dir=self.marker_dir,
                                   batch_id=batch.batch_id, name=name, payload=batch.payload)

        how = self._run(f"upload {final}", upload)
        self._prune()
        detail = f"{how} sha256={hashlib.sha256(batch.payload).hexdigest()}" if how == "uploaded" else how
        return Receipt(batch_id=batch.batch_id, partner_reference=f"{self.partner_id}:{name}",
                       delivered_at=dt.datetime.now(dt.timezone.utc), detail=detail)

    def _prune(self) -> None:
        """Old markers and orphaned uploads go, once a day, in a session of their own."""
        if not self.marker_days or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + DAY

        async def work(sftp: asyncssh.SFTPClient) -> int:
            return await prune(sftp, upload_dir=self.upload_dir, marker_dir=self.marker_dir,
                               days=self.marker_days, now=time.time())
        try:
            removed = self._run(f"prune {self.marker_dir}", work)
        except DeliveryError as exc:  # the batch is delivered; pruning tries again tomorrow
            log.warning("sftp.prune_failed partner=%s error=%s", self.partner_id, exc)
            return
        if removed:
            log.info("sftp.pruned partner=%s files=%d older_than_days=%s", self.partner_id, removed, self.marker_days)

    def fetch_updates(self, cursor: str | None) -> UpdatePage:
        """Status files after the cursor (a file name) from the partner's status folder."""
        async def fetch(sftp: asyncssh.SFTPClient) -> tuple[list[PartnerUpdate], str | None]:
            if not await sftp.isdir(self.status_dir):
                return [], cursor
            names = pending_names(await sftp.listdir(self.status_dir), cursor)
            sizes = [(n, (await sftp.stat(posixpath.join(self.status_dir, n))).size or 0) for n in names]
            names = within_budget(sizes)
            where = f"partner {self.partner_id}"
            updates: list[PartnerUpdate] = []
            for n in names:
                async with sftp.open(posixpath.join(self.status_dir, n), "rb") as fh:
                    # a file that grew since its size was read is refused too
                    data = cast(bytes, await fh.read(MAX_STATUS_BYTES + 1))
                check_size(where, n, len(data))
                updates.extend(decode_status_file(where, n, data))
            return updates, names[-1] if names else cursor

        updates, new_cursor = self._run(f"read {self.status_dir}", fetch)
        return UpdatePage(updates=updates, cursor=new_cursor)

    def close(self) -> None:
        """Nothing held between calls."""
