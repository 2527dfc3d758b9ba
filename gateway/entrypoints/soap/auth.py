"""SOAP client authentication: HTTP Basic or a WS-Security UsernameToken (PasswordText), scrypt hashes.

Passwords are stored only as scrypt hashes made with ``python -m gateway.crypto.passwords`` (the same
format as SFTP logins). A client may have several logins (``clients.<id>.soap.credentials``), each with
a role (``submit`` or ``read``), so a new password can be added before the old one is removed.
scrypt costs ~100 ms on purpose, so at most ``soap.max_password_checks`` run at once, failed logins
are throttled (``throttle.LoginThrottle``) and a refused attempt costs no hash at all. A successful
check is remembered for a few minutes under a keyed digest of the password (no plaintext kept), so a
busy ERP does not pay scrypt per request, and a remembered login is not held up by the throttle that
someone guessing its username has set off.
WS-Security PasswordDigest is not supported: it needs the plaintext password on the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from lxml import etree

from gateway.config import GatewayConfig
from gateway.crypto.passwords import hash_password, is_password_hash, verify_password
from gateway.services.login_throttle import LoginThrottle
from gateway.errors import ConfigError, GatewayError

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_CACHE_SECONDS, _CACHE_MAX = 300.0, 10_000
# The same hardening as the request gate: no DTD, no entities, no network, no huge trees.
_HARDENED: dict[str, Any] = dict(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False,
                                 remove_comments=True)


class TokenError(GatewayError):
    """A WS-Security token that is there but cannot be used; the message says why (no secret in it)."""


ENV_LOGIN = "gateway.login"  # the WSGI environ key of the authenticated username (the gate sets it, no request can)


@dataclass(frozen=True)
class Principal:
    client_id: str
    read_only: bool
    login: str = ""  # the SOAP username that logged in (recorded as who asked where a use case needs one)


@dataclass(frozen=True)
class Outcome:
    """What a login attempt came to: a principal, or refused (wrong, throttled for N s, or busy)."""

    principal: Principal | None = None
    retry_after: float = 0.0  # > 0: throttled, not checked
    busy: bool = False  # the password checks were all taken for too long


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(username, password) from an ``Authorization: Basic`` header."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, binascii.Error):
        return None
    return (user, password) if sep else None


def username_token(body: bytes) -> tuple[str, str] | None:
    """(username, password) from a WS-Security UsernameToken; None without one; TokenError if unusable.

    Parsing stops where the SOAP Body begins: a stranger's claims are never built into a tree.
    """
    if b"UsernameToken" not in body:
        return None
    parser = etree.XMLPullParser(events=("start", "end"), **_HARDENED)
    try:
        for at in range(0, len(body), 65536):
            parser.feed(body[at:at + 65536])
            for event, element in parser.read_events():
                if not isinstance(element, etree._Element):
                    continue
                if event == "start" and str(element.tag).endswith("}Body"):
                    return None
                if event == "end" and element.tag == f"{{{WSSE}}}UsernameToken":
                    parent = element.getparent()
                    if parent is not None and parent.tag == f"{{{WSSE}}}Security":
                        return _token(element)
    except etree.XMLSyntaxError:
        return None
    return None


def _token(token: Any) -> tuple[str, str]:
    user, password = token.findtext(f"{{{WSSE}}}Username"), token.find(f"{{{WSSE}}}Password")
    kind = (password.get("Type") or "") if password is not None else ""
    if kind.endswith("#PasswordDigest"):
        raise TokenError("WS-Security PasswordDigest is not supported: send the UsernameToken with "
                         "PasswordText over TLS (or use HTTP Basic)")
    if kind and not kind.endswith("#PasswordText"):
        raise TokenError("unknown WS-Security password type: send PasswordText over TLS")
    if not user or not user.strip():
        raise TokenError("the UsernameToken has no Username")
    if password is None:
        raise TokenError("the UsernameToken has no Password")
    return user.strip(), password.text or ""


def load_logins(config: GatewayConfig) -> dict[str, tuple[str, str, bool]]:
    """username -> (client id, scrypt hash, read only) of every client; ConfigError if inconsistent."""
    users: dict[str, tuple[str, str, bool]] = {}
    for cid, c in config.clients.items():
        if not c.enabled:  # `gateway clients disable`: no login until enabled again
            continue
        key = f"clients.{cid}.soap"
        logins = [(f"{key}.credentials[{i}]", cred.username, cred.password_hash, cred.role == "read")
                  for i, cred in enumerate(c.soap.credentials)]
        if c.soap.username:
            logins.insert(0, (key, c.soap.username, c.soap.password_hash or "", c.soap.read_only))
        for where, username, stored, read_only in logins:
            if not stored or not is_password_hash(stored):
                raise ConfigError("expected a scrypt hash from 'python -m gateway.crypto.passwords'",
                                  file=config.source, key=f"{where}.password_hash")
            if not username.strip() or username in users:
                taken = f"is already used by client '{users[username][0]}'" if username in users else "is empty"
                raise ConfigError(f"username '{username}' {taken}", file=config.source, key=f"{where}.username")
            users[username] = (cid, stored, read_only)
    return users


class Authenticator:
    """Checks credentials against the configured clients' hashes: throttled, bounded, with a success cache."""

    def __init__(self, config: GatewayConfig, throttle: LoginThrottle | None = None) -> None:
        cfg = config.soap
        self._users = load_logins(config)
        # ``serve`` passes the process's throttle (``App.login_throttle``), which the web console counts in too
        self.throttle = throttle or LoginThrottle(cfg.login)
        self._checks = threading.BoundedSemaphore(max(1, cfg.max_password_checks))
        self._busy_wait = cfg.busy_wait_seconds
        self.verifications = 0  # scrypt runs so far (operators' metric; tests see a refusal cost none)
        self._dummy = hash_password(secrets.token_hex(16))
        self._key = secrets.token_bytes(32)  # per process: cache entries mean nothing outside it
        self._cache: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def reload(self, config: GatewayConfig) -> None:
        """Take the clients' SOAP logins from ``config`` (the config file changed while serving).

        A ConfigError leaves the current logins in place. The success cache is keyed by the stored
        hash too, so a changed password or a removed login is never answered from it.
        """
        self._users = load_logins(config)

    def knows(self, username: str) -> bool:
        """Whether ``username`` is a configured login (a failed attempt may name it in the log)."""
        return username in self._users

    def check(self, username: str, password: str, address: str | None = None) -> Outcome:
        """Check one login attempt from ``address``."""
        entry = self._users.get(username)
        token = None
        if entry is not None:
            token = hmac.new(self._key, f"{username}\x00{password}\x00{entry[1]}".encode(), hashlib.sha256).digest()
            now = time.monotonic()
            with self._lock:
                seen = self._cache.get(token)
                if seen is not None and now - seen <= _CACHE_SECONDS:
                    self._cache[token] = now  # a login in use stays remembered
                    return Outcome(Principal(entry[0], entry[2], username))
        wait = self.throttle.wait_for(username=username, address=address)
        if wait > 0:
            return Outcome(retry_after=wait)
        if not self._checks.acquire(timeout=self._busy_wait):
            return Outcome(busy=True)
        try:
            with self._lock:
                self.verifications += 1
            # an unknown user costs the same time as a wrong password
            good = verify_password(password, entry[1] if entry else self._dummy) and entry is not None
        finally:
            self._checks.release()
        if not good or entry is None or token is None:
            self.throttle.failed(username=username, address=address)
            return Outcome()
        self.throttle.succeeded(username, address)
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[token] = time.monotonic()
        return Outcome(Principal(entry[0], entry[2], username))
