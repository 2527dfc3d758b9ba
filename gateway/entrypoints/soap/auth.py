"""SOAP client authentication: HTTP Basic or a WS-Security UsernameToken (PasswordText), scrypt hashes.

Passwords are stored only as ``scrypt$N$r$p$salt$hash`` (base64), made with
``python -m gateway.entrypoints.soap.auth`` (reads the password from stdin or a prompt). scrypt costs
~50 ms on purpose; a successful check is remembered for a few minutes under a keyed digest of the
password, so a busy ERP does not pay it per request and no plaintext is kept in memory.
WS-Security PasswordDigest is not supported: it needs the plaintext password on the server.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import secrets
import sys
import threading
import time
from dataclasses import dataclass

from lxml import etree

from gateway.config import GatewayConfig

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_N, _R, _P = 2 ** 15, 8, 1
_CACHE_SECONDS, _CACHE_MAX = 300.0, 10_000
# The same hardening as the request gate: no DTD, no entities, no network, no huge trees.
_PARSER = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False,
                          remove_comments=True)


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """A storable scrypt hash of ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * r * n * 2, dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches the stored hash (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=128 * int(r) * int(n) * 2, dklen=len(want))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


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
        self._users = {c.soap.username: (cid, c.soap.password_hash or "", c.soap.read_only)
                       for cid, c in config.clients.items() if c.soap.username and c.soap.password_hash}
        self._key = secrets.token_bytes(32)  # per process: cache entries mean nothing outside it
        self._cache: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def check(self, username: str, password: str) -> Principal | None:
        entry = self._users.get(username)
        if entry is None:
            hashlib.scrypt(b"x", salt=b"0" * 16, n=_N, r=_R, p=_P, maxmem=128 * _R * _N * 2)  # same time as a miss
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


def main() -> int:
    """Print a hash for ``clients.<id>.soap.password_hash``; the password comes from stdin or a prompt."""
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("SOAP password: ")
    if len(password) < 12:
        print("error: use a password of at least 12 characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
