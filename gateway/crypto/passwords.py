"""Password hashes (scrypt) for client logins: only the hash is ever stored in the config.

Format: ``scrypt$<n>$<r>$<p>$<salt base64>$<hash base64>``. Make one with
``python -m gateway.crypto.passwords`` (asks twice, prints the line to paste into the config).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import secrets
import sys

N, R, P, DKLEN = 2 ** 15, 8, 1, 32
_MAXMEM = 128 * N * R * 2


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` in the storable format above."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=DKLEN, maxmem=_MAXMEM)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; a malformed hash never matches."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True), n=int(n), r=int(r),
                             p=int(p), dklen=len(expected), maxmem=128 * int(n) * int(r) * 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def is_password_hash(value: str) -> bool:
    """Whether ``value`` looks like a hash this module made (config validation)."""
    parts = value.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(p.isdigit() for p in parts[1:4])


def main() -> int:
    first = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if sys.stdin.isatty() and getpass.getpass("again: ") != first:
        print("the two passwords differ", file=sys.stderr)
        return 2
    if len(first) < 12:
        print("use at least 12 characters", file=sys.stderr)
        return 2
    print(hash_password(first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
