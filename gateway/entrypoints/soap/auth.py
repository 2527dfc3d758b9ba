"""SOAP client authentication: HTTP Basic or a WS-Security UsernameToken (PasswordText), scrypt hashes.

Passwords are stored only as scrypt hashes made with ``python -m gateway.crypto.passwords`` (the same
format as SFTP logins). scrypt costs ~100 ms on purpose; a successful check is remembered for a few
minutes under a keyed digest of the password, so a busy ERP does not pay it per request and no
plaintext is kept in memory.
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

from lxml import etree

from gateway.config import GatewayConfig
from gateway.crypto.passwords import hash_password, is_password_hash, verify_password
from gateway.errors import ConfigError

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_CACHE_SECONDS, _CACHE_MAX = 300.0, 10_000
# The same hardening as the request gate: no DTD, no entities, no network, no huge trees.
_PARSER = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False,
                          remove_comments=True)


@dataclass(frozen=True)
class Principal:
    client_id: str
    read_only: bool


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
    """(username, password) from a WS-Security UsernameToken in the SOAP header, if there is one."""
    if b"UsernameToken" not in body:
        return None
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        return None
    token = root.find(f".//{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    if token is None:
        return None
    user, password = token.findtext(f"{{{WSSE}}}Username"), token.find(f"{{{WSSE}}}Password")
    if not user or password is None:
        return None
    if (password.get("Type") or "").endswith("#PasswordDigest"):
        return None
    return user.strip(), password.text or ""


class Authenticator:
    """Checks credentials against the configured clients' hashes, with a short success cache."""

    def __init__(self, config: GatewayConfig) -> None:
        self._users: dict[str, tuple[str, str, bool]] = {}
        for cid, c in config.clients.items():
            if not c.soap.username:
                continue
            key = f"clients.{cid}.soap"
            if not c.soap.password_hash or not is_password_hash(c.soap.password_hash):
                raise ConfigError("expected a scrypt hash from 'python -m gateway.crypto.passwords'",
                                  file=config.source, key=f"{key}.password_hash")
            if c.soap.username in self._users:
                raise ConfigError(f"username '{c.soap.username}' is already used by client "
                                  f"'{self._users[c.soap.username][0]}'", file=config.source, key=f"{key}.username")
            self._users[c.soap.username] = (cid, c.soap.password_hash, c.soap.read_only)
        self._dummy = hash_password(secrets.token_hex(16))
        self._key = secrets.token_bytes(32)  # per process: cache entries mean nothing outside it
        self._cache: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def check(self, username: str, password: str) -> Principal | None:
        entry = self._users.get(username)
        if entry is None:
            verify_password(password, self._dummy)  # an unknown user costs the same time as a wrong password
            return None
        client_id, stored, read_only = entry
        token = hmac.new(self._key, f"{username}\x00{password}\x00{stored}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            seen = self._cache.get(token)
        if seen is None or now - seen > _CACHE_SECONDS:
            if not verify_password(password, stored):
                return None
            with self._lock:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[token] = now
        return Principal(client_id, read_only)

