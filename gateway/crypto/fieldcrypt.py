"""Field-level encryption at rest: AES-256-GCM with a key id, and a keyed blind index for search.

Ciphertext layout: ``b"G1" | len(key_id) (1 byte) | key_id | nonce (12) | ciphertext+tag``.
The key id travels with each value, so keys rotate by adding a new active key: old values still
decrypt with their own key. Callers bind a value to its row with ``aad`` (e.g. client and
reference), so a ciphertext copied onto another row does not decrypt.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import KeyStoreError

_MAGIC = b"G1"


class FieldCipher:
    """Encrypts and decrypts values with the active key; decrypts with any known key."""

    def __init__(self, keys: Mapping[str, bytes], active: str, index_key: bytes) -> None:
        if active not in keys:
            raise KeyStoreError(f"active key '{active}' is not among the data keys")
        for kid, key in keys.items():
            if len(key) != 32:
                raise KeyStoreError(f"data key '{kid}' must be 32 bytes, got {len(key)}")
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}
        self._active = active
        self._prefix = _MAGIC + bytes([len(active.encode())]) + active.encode()
        self._index_key = index_key

    @property
    def active_key_id(self) -> str:
        return self._active

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        return self._prefix + nonce + self._aead[self._active].encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        if blob[:2] != _MAGIC or len(blob) < 3:
            raise KeyStoreError("not a gateway ciphertext")
        n = blob[2]
        kid = blob[3:3 + n].decode()
        aead = self._aead.get(kid)
        if aead is None:
            raise KeyStoreError(f"value was encrypted with unknown key '{kid}'")
        nonce, body = blob[3 + n:15 + n], blob[15 + n:]
        try:
            return aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise KeyStoreError(f"value does not decrypt with key '{kid}' (tampered or bound to another row)") \
                from None

    def blind_index(self, value: str) -> str:
        """A keyed, deterministic token of a normalised value: equality search without plaintext."""
        norm = " ".join(value.casefold().split())
        return hmac.digest(self._index_key, norm.encode(), "sha256").hex()[:32]


def new_key_file_content() -> dict[str, object]:
    """A fresh key set: one active 256-bit data key and a blind-index key."""
    kid = "k1"
    return {
        "active": kid,
        "keys": {kid: base64.b64encode(secrets.token_bytes(32)).decode()},
        "index_key": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


def load_field_cipher(path: Path, env_var: str | None = None) -> FieldCipher:
    """The cipher from ``$env_var`` (JSON) if set, else from the key file ``path``."""
    source = f"environment variable {env_var}" if env_var and os.environ.get(env_var) else str(path)
    try:
        text = os.environ[env_var] if env_var and os.environ.get(env_var) else path.read_text()
    except FileNotFoundError:
        raise KeyStoreError(f"no data key file at {path}: run 'gateway keys init' first") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read data key file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
        keys = {str(k): base64.b64decode(v, validate=True) for k, v in doc["keys"].items()}
        return FieldCipher(keys, str(doc["active"]), base64.b64decode(doc["index_key"], validate=True))
    except KeyStoreError as exc:
        raise KeyStoreError(f"{source}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyStoreError(f"{source}: expected JSON with 'active', 'keys' and 'index_key' ({exc!r})") from None
