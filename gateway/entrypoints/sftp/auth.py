"""Who may log in: each client's public keys (several allowed) and an optional scrypt password hash.

Failed logins are counted per peer address and per login name, each failure once: a wrong password
counts when it is refused, a connection that offered only keys that did not fit counts when it
closes. Past ``max_auth_failures`` within the window every login from that address is refused, and
every password login for that name (its keys still work: a key cannot be guessed, and an attacker
must not lock a client out of key logins) until the window has passed. A password is always checked
with the same scrypt work, also for unknown names and names without a password, so the answer's
time does not tell which names exist. Logs name the login, the peer and the method, never a password
or a key.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache

import asyncssh

from gateway import metrics
from gateway.config import GatewayConfig
from gateway.crypto.passwords import hash_password, is_password_hash, verify_password
from gateway.entrypoints.sftp.channels import ChannelCount, SessionFactory
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
        if not client.enabled:
            continue
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


@cache
def _decoy_hash() -> str:
    """A hash no password matches, checked for unknown names: the same scrypt work as a real login."""
    return hash_password(secrets.token_urlsafe(32))


def _verify(password: str, stored: str | None) -> bool:
    """The password against ``stored``; without one, the same work against a decoy, and False."""
    if stored:
        return verify_password(password, stored)
    verify_password(password, _decoy_hash())
    return False


class CredentialTable(Mapping[str, Credentials]):
    """The logins the server checks against; ``reload`` swaps in a new table while serving.

    Sessions look a login up at the moment they authenticate, so a swapped table applies to the next
    login; a session already open keeps going.
    """

    def __init__(self, table: dict[str, Credentials]) -> None:
        self._table = table

    def __getitem__(self, key: str) -> Credentials:
        return self._table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def reload(self, cfg: GatewayConfig) -> None:
        """Parse ``cfg``'s logins (ConfigError leaves the current table in place), then swap at once."""
        self._table = load_credentials(cfg)


class FailureLimiter:
    """Failed logins per key (``peer:<address>``, ``login:<name>``) in a sliding window."""

    MAX_KEYS = 100_000  # names are the attacker's choice: the table is bounded, oldest forgotten first

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
        if peer not in self._failures and len(self._failures) >= self.MAX_KEYS:
            self._failures.pop(next(iter(self._failures)))
        self._recent(peer).append(time.monotonic())


class ConnectionGate:
    """Open connections not logged in yet, per peer address and in all, and logged-in ones per client.

    Every connection is a file descriptor until its login times out: 1,100 silent TCP connections from one
    address used up a 1024-descriptor limit, and the inbox watcher, the database and the SOAP listener
    failed with it until ``serve`` gave up. Connections over a bound are closed as they arrive.
    """

    def __init__(self, per_address: int, total: int, per_client: int) -> None:
        self.per_address, self.total, self.per_client = per_address, total, per_client
        self._waiting: dict[str, int] = {}  # peer address -> connections not logged in yet
        self._clients: dict[str, int] = {}  # client id -> logged-in connections
        self._refusals: dict[str, int] = {}  # peer address -> connections refused (a flood logs a few lines)

    def refused(self, peer: str) -> int:
        """Count a refusal of ``peer``'s; returns the count (the caller logs the 1st, 10th, 100th, ...)."""
        if peer not in self._refusals and len(self._refusals) >= FailureLimiter.MAX_KEYS:
            self._refusals.pop(next(iter(self._refusals)))
        self._refusals[peer] = self._refusals.get(peer, 0) + 1
        return self._refusals[peer]

    def admit(self, peer: str) -> str | None:
        """Count a new connection from ``peer``; the reason to close it instead, or None."""
        if self._waiting.get(peer, 0) >= self.per_address:
            return "too_many_from_address"
        if sum(self._waiting.values()) >= self.total:
            return "too_many_waiting"
        self._waiting[peer] = self._waiting.get(peer, 0) + 1
        return None

    def _release(self, peer: str) -> None:
        left = self._waiting.get(peer, 0) - 1
        if left > 0:
            self._waiting[peer] = left
        else:
            self._waiting.pop(peer, None)

    def logged_in(self, peer: str, client_id: str) -> bool:
        """The connection moves from waiting to ``client_id``'s; False (not counted) when it has too many."""
        self._release(peer)
        if self._clients.get(client_id, 0) >= self.per_client:
            return False
        self._clients[client_id] = self._clients.get(client_id, 0) + 1
        return True

    def closed(self, peer: str, client_id: str | None) -> None:
        """A counted connection ended: waiting (``client_id`` None) or logged in."""
        if client_id is None:
            self._release(peer)
            return
        left = self._clients.get(client_id, 0) - 1
        if left > 0:
            self._clients[client_id] = left
        else:
            self._clients.pop(client_id, None)


class GatewaySSHServer(asyncssh.SSHServer):
    """One SSH connection: authentication, and its channels' sessions (``channels.py``; the SFTP server of a
    session is ``JailedSFTPServer``)."""

    def __init__(self, credentials: Mapping[str, Credentials], limiter: FailureLimiter,
                 gate: ConnectionGate | None = None, sessions: SessionFactory | None = None) -> None:
        self.credentials, self.limiter, self.gate, self.sessions = credentials, limiter, gate, sessions
        self.channels = ChannelCount()
        self.peer, self.username, self.authenticated, self.tried = "?", "", False, False
        self.counted = False  # a refused password was counted already: the close does not count again
        self.held: str | None = None  # what the gate counts this connection as: "waiting", "client" or nothing
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        self.peer, self.conn = (str(peer[0]) if peer else "?"), conn
        refused = self.gate.admit(self.peer) if self.gate is not None else None
        if refused is not None:
            assert self.gate is not None
            count = self.gate.refused(self.peer)
            if str(count).rstrip("0") == "1":  # 1, 10, 100, ...: a flood is a few lines, not one per attempt
                log.warning("sftp.connection_refused peer=%s reason=%s refused=%d", self.peer, refused, count)
            conn.abort()
            return
        self.held = "waiting" if self.gate is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.gate is not None and self.held is not None:
            self.gate.closed(self.peer, self.username if self.held == "client" else None)
            self.held = None
        if self.authenticated:
            metrics.SFTP_ACTIVE.dec()
        if self.tried and not self.authenticated:
            metrics.SFTP_AUTH_FAILURES.inc()
            if not self.counted:  # keys only: one failure for the connection
                self.limiter.failed(f"peer:{self.peer}")
            log.warning("sftp.login_failed login=%s peer=%s", self.username[:64], self.peer)

    def begin_auth(self, username: str) -> bool:
        self.username = username
        if self.limiter.blocked(f"peer:{self.peer}"):
            log.warning("sftp.login_blocked login=%s peer=%s reason=too_many_failures", username[:64], self.peer)
        return True  # always ask for credentials, also for unknown names (no user enumeration)

    def auth_completed(self) -> None:
        if self.gate is not None and self.held == "waiting":
            if not self.gate.logged_in(self.peer, self.username):
                self.held = None
                log.warning("sftp.connection_refused client=%s peer=%s reason=too_many_for_client",
                            self.username, self.peer)
                if self.conn is not None:
                    self.conn.abort()
                return
            self.held = "client"
        self.authenticated = True
        metrics.SFTP_SESSIONS.labels(self.username).inc()  # a client id: only configured logins get here
        metrics.SFTP_ACTIVE.inc()
        log.info("sftp.login client=%s peer=%s", self.username, self.peer)

    def session_requested(self) -> asyncssh.SSHServerSession[bytes] | bool:
        if self.sessions is None or not self.authenticated:
            return False
        return self.sessions.open(self.channels, self.username, self.peer)

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self.tried = True
        creds = self.credentials.get(username)
        if self.limiter.blocked(f"peer:{self.peer}") or creds is None:
            return False
        return key.public_data in creds.keys

    def password_auth_supported(self) -> bool:
        return any(c.password_hash for c in self.credentials.values())

    async def validate_password(self, username: str, password: str) -> bool:
        self.tried = True
        creds = self.credentials.get(username)
        if self.limiter.blocked(f"peer:{self.peer}") or self.limiter.blocked(f"login:{username[:64]}"):
            return False  # refused without hash work: the block is no secret, and costs the server nothing
        stored = creds.password_hash if creds is not None else None
        ok = await asyncio.to_thread(_verify, password, stored)
        if not ok:
            self.counted = True
            self.limiter.failed(f"peer:{self.peer}")
            self.limiter.failed(f"login:{username[:64]}")
            log.warning("sftp.password_failed login=%s peer=%s", username[:64], self.peer)
        return ok
