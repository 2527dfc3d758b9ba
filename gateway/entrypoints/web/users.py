"""Web console logins (``web.users``): who a login is, and checking its password with throttling.

Passwords are scrypt hashes like SOAP's and SFTP's (``gateway.crypto.passwords``). A demo login may name
a ``password_file`` instead (made by ``gateway keys init`` under keys.dir): its password is hashed in
memory at start-up and shown once by ``serve``, never stored in the config or the repo.
Failed logins are throttled per login and per address by the process's one ``LoginThrottle`` (``App.login_throttle``,
``soap.login`` settings), the same instance the SOAP endpoint counts in: failures on either entry point
count for both. ``check`` asks the throttle on the event loop first (a refused attempt costs no hash and no
worker thread), then takes one of ``MAX_HASHES`` hash slots without waiting: a login arriving while all are
taken gets the throttle's "try again in a moment" at once. Waiting for a slot in a worker thread is what a login
flood from many addresses turned into every worker thread of the process parked on it, and every page stalled.
An unknown login is checked against a dummy hash, so its answer takes as long as a wrong password.
A login of a disabled client (``clients.<id>.enabled: false``, ``gateway clients disable``) is treated as unknown,
as SOAP and SFTP treat that client's logins: it cannot log in, and its open sessions end at their next request
(its credential is gone); enabling the client again lets it log in again.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from gateway.config import GatewayConfig, WebUserConfig
from gateway.crypto.passwords import hash_password, is_password_hash, verify_password
from gateway.services.login_throttle import LoginThrottle
from gateway.errors import ConfigError
from gateway.domain.sandbox import is_sandbox_client

MAX_LOGIN, MAX_PASSWORD = 128, 1024
# scrypt at once (each ~0.1-0.5 s of a core and 32 MB); a legitimate login hardly ever meets another
MAX_HASHES = 2
BUSY_RETRY_SECONDS = 1.0  # what a login that found every hash slot taken is told to wait


@dataclass(frozen=True)
class WebUser:
    login: str
    client_id: str | None  # None: an operator
    can_submit: bool

    @property
    def operator(self) -> bool:
        return self.client_id is None

    @property
    def sandbox(self) -> bool:
        """A login to a client's sandbox (docs/sandbox.md): every page says so."""
        return self.client_id is not None and is_sandbox_client(self.client_id)


@dataclass(frozen=True)
class LoginOutcome:
    user: WebUser | None = None
    retry_after: float = 0.0  # > 0: throttled (or every hash slot taken: ``busy``), not checked
    busy: bool = False


class UserBook:
    """The configured logins; ``check`` runs on the event loop, the hash in a worker thread."""

    def __init__(self, cfg: GatewayConfig, throttle: LoginThrottle | None = None) -> None:
        self.users: dict[str, tuple[WebUser, str]] = {}
        self.demo: dict[str, str] = {}  # login -> password, for users with a password_file only
        self._configs: dict[str, WebUserConfig] = dict(cfg.web.users)
        for login, ucfg in cfg.web.users.items():
            self.users[login] = (self._user(cfg, login, ucfg), self._hash(cfg, login, ucfg))
        self._material = {login: self._credential_material(login, ucfg) for login, ucfg in cfg.web.users.items()}
        self._disabled = self._logins_disabled(cfg)
        # ``serve`` passes the process's throttle (``App.login_throttle``), which SOAP counts in too
        self.throttle = throttle or LoginThrottle(cfg.soap.login)
        self._hashes = threading.BoundedSemaphore(MAX_HASHES)
        self._dummy = hash_password("no such login")

    def _user(self, cfg: GatewayConfig, login: str, u: WebUserConfig) -> WebUser:
        key = f"web.users.{login}"
        if bool(u.client) == bool(u.operator):
            raise ConfigError("a web login has either client: <id> or operator: true", file=cfg.source, key=key)
        if u.client and u.client not in cfg.clients:
            raise ConfigError(f"unknown client '{u.client}'", file=cfg.source, key=f"{key}.client")
        return WebUser(login=login, client_id=u.client, can_submit=u.operator or u.role == "submit")

    def _hash(self, cfg: GatewayConfig, login: str, u: WebUserConfig) -> str:
        key = f"web.users.{login}"
        if bool(u.password_hash) == bool(u.password_file):
            raise ConfigError("a web login has either password_hash or password_file", file=cfg.source, key=key)
        if u.password_hash:
            if not is_password_hash(u.password_hash):
                raise ConfigError("not a scrypt hash (python -m gateway.crypto.passwords)", file=cfg.source,
                                  key=f"{key}.password_hash")
            return u.password_hash
        path = cfg.path(str(u.password_file))
        try:
            password = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the password file ({exc.strerror}): run 'gateway keys init'",
                              file=cfg.source, key=f"{key}.password_file") from None
        if len(password) < 12:
            raise ConfigError("the password file holds fewer than 12 characters", file=cfg.source,
                              key=f"{key}.password_file")
        self.demo[login] = password
        return hash_password(password)

    def prepare_reload(self, cfg: GatewayConfig) -> Callable[[], None]:
        """Check ``cfg``'s logins (ConfigError changes nothing) and return the swap that takes them.

        Unchanged logins keep their entry (no second read of a password file, no hash); a session of a
        login that is gone or changed finds the new entry, or none, at its next request.
        """
        users: dict[str, tuple[WebUser, str]] = {}
        for login, ucfg in cfg.web.users.items():
            old = self.users.get(login)
            same = old is not None and self._configs.get(login) == ucfg and \
                (ucfg.client is None or ucfg.client in cfg.clients)
            users[login] = old if same and old is not None else (self._user(cfg, login, ucfg),
                                                                 self._hash(cfg, login, ucfg))
        configs = dict(cfg.web.users)
        material = {login: self._credential_material(login, ucfg) for login, ucfg in cfg.web.users.items()}
        disabled = self._logins_disabled(cfg)

        def swap() -> None:
            self.users, self._configs, self._material, self._disabled = users, configs, material, disabled
        return swap

    @staticmethod
    def _logins_disabled(cfg: GatewayConfig) -> frozenset[str]:
        """The logins whose client is disabled (checked by ``_user`` to exist)."""
        return frozenset(login for login, u in cfg.web.users.items()
                         if u.client and u.client in cfg.clients and not cfg.clients[u.client].enabled)

    def _credential_material(self, login: str, u: WebUserConfig) -> str:
        # what a session is bound to: a new password, another client or role makes it another credential
        secret = u.password_hash or f"file:{self.demo.get(login, '')}"
        return "\n".join((login, u.client or "", "operator" if u.operator else str(u.role), secret))

    def credential(self, login: str, key: bytes) -> str | None:
        """A keyed fingerprint of ``login`` as configured now (password hash, client, role), None when it is
        gone: a session stores it at login and is valid only while it is unchanged."""
        material = self._material.get(login)
        if material is None or login in self._disabled:
            return None
        return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()

    def get(self, login: str) -> WebUser | None:
        entry = self._entry(login)
        return entry[0] if entry else None

    def _entry(self, login: str) -> tuple[WebUser, str] | None:
        return None if login in self._disabled else self.users.get(login)

    async def check(self, login: str, password: str, address: str | None) -> LoginOutcome:
        """The user if the password is right. Throttled attempts, and attempts while ``MAX_HASHES`` hashes are
        running, are refused at once, without a hash and without a worker thread."""
        login, password = login[:MAX_LOGIN], password[:MAX_PASSWORD]
        wait = self.throttle.wait_for(username=login, address=address)  # a lock held for microseconds
        if wait > 0:
            return LoginOutcome(retry_after=wait)
        if not self._hashes.acquire(blocking=False):
            return LoginOutcome(retry_after=BUSY_RETRY_SECONDS, busy=True)
        try:
            return await run_in_threadpool(self._verify, login, password, address)
        finally:
            self._hashes.release()

    def _verify(self, login: str, password: str, address: str | None) -> LoginOutcome:
        entry = self._entry(login)
        ok = verify_password(password, entry[1] if entry else self._dummy) and entry is not None
        if not ok or entry is None:
            self.throttle.failed(username=login, address=address)
            return LoginOutcome()
        self.throttle.succeeded(login, address)
        return LoginOutcome(user=entry[0])
