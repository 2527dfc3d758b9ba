"""Who may log in: each client's public keys (several allowed) and an optional scrypt password hash.

Failed logins are counted per peer address; past ``max_auth_failures`` within the window every login
from that address is refused until the window has passed. Logs name the login, the peer and the
method, never a password or a key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import asyncssh

from gateway import metrics
from gateway.config import GatewayConfig
from gateway.crypto.passwords import is_password_hash, verify_password
from gateway.errors import ConfigError

log = logging.getLogger("gateway.sftp")


@dataclass
class Credentials:
    keys: set[bytes] = field(default_factory=set)  # public key blobs
    password_hash: str | None = None


def load_credentials(cfg: GatewayConfig) -> dict[str, Credentials]:
    """Parse every client's SFTP keys and hashes once, naming the bad key in the error."""
    out: dict[str, Credentials] = {}
    for cid, client in cfg.clients.items():
        creds = Credentials(password_hash=client.sftp.password_hash)
        for i, line in enumerate(client.sftp.authorized_keys):
            try:
                creds.keys.add(asyncssh.import_public_key(line.strip()).public_data)
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise ConfigError(f"not an OpenSSH public key: {exc}", file=cfg.source,
                                  key=f"clients.{cid}.sftp.authorized_keys[{i}]") from None
        if creds.password_hash is not None and not is_password_hash(creds.password_hash):
            raise ConfigError("expected a hash made by `python -m gateway.crypto.passwords`, never a password",
                              file=cfg.source, key=f"clients.{cid}.sftp.password_hash")
        if creds.keys or creds.password_hash:
            out[cid] = creds
    return out


class FailureLimiter:
    """Failed logins per peer address in a sliding window."""

    def __init__(self, max_failures: int, window_seconds: float) -> None:
        self.max_failures, self.window = max_failures, window_seconds
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, peer: str) -> deque[float]:
        times = self._failures.setdefault(peer, deque())
        cutoff = time.monotonic() - self.window
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def blocked(self, peer: str) -> bool:
        recent = len(self._recent(peer))
        if not recent:
            self._failures.pop(peer, None)  # forget quiet addresses: the table stays small
        return recent >= self.max_failures

    def failed(self, peer: str) -> None:
        self._recent(peer).append(time.monotonic())


class GatewaySSHServer(asyncssh.SSHServer):
    """One SSH connection: authentication only; the SFTP session is ``JailedSFTPServer``."""

    def __init__(self, credentials: dict[str, Credentials], limiter: FailureLimiter) -> None:
        self.credentials, self.limiter = credentials, limiter
        self.peer, self.username, self.authenticated, self.tried = "?", "", False, False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "?"

    def connection_lost(self, exc: Exception | None) -> None:
        if self.authenticated:
            metrics.SFTP_ACTIVE.dec()
        if self.tried and not self.authenticated:
            metrics.SFTP_AUTH_FAILURES.inc()
            self.limiter.failed(self.peer)
            log.warning("sftp.login_failed login=%s peer=%s", self.username[:64], self.peer)

    def begin_auth(self, username: str) -> bool:
        self.username = username
        if self.limiter.blocked(self.peer):
            log.warning("sftp.login_blocked login=%s peer=%s reason=too_many_failures", username[:64], self.peer)
        return True  # always ask for credentials, also for unknown names (no user enumeration)

    def auth_completed(self) -> None:
        self.authenticated = True
        metrics.SFTP_SESSIONS.labels(self.username).inc()  # a client id: only configured logins get here
        metrics.SFTP_ACTIVE.inc()
        log.info("sftp.login client=%s peer=%s", self.username, self.peer)

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self.tried = True
        creds = self.credentials.get(username)
        if self.limiter.blocked(self.peer) or creds is None:
            return False
        return key.public_data in creds.keys

    def password_auth_supported(self) -> bool:
        return any(c.password_hash for c in self.credentials.values())

    async def validate_password(self, username: str, password: str) -> bool:
        self.tried = True
        creds = self.credentials.get(username)
        if self.limiter.blocked(self.peer) or creds is None or not creds.password_hash:
            return False
        ok = await asyncio.to_thread(verify_password, password, creds.password_hash)
        if not ok:
            self.limiter.failed(self.peer)
            log.warning("sftp.password_failed login=%s peer=%s", username[:64], self.peer)
        return ok
