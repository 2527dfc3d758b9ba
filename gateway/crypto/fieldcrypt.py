"""Field-level encryption at rest: AES-256-GCM with a key id, and a keyed blind index for search.

Ciphertext layout: ``b"G1" | len(key_id) (1 byte) | key_id | nonce (12) | ciphertext+tag``.
The key id travels with each value, so keys rotate by adding a new active key: old values still
decrypt with their own key. Callers bind a value to its row with ``aad`` (e.g. client and
reference), so a ciphertext copied onto another row does not decrypt.

This master key encrypts client keys (``crypto/envelope.py``), documents, messages and raw payloads.
A cipher loaded from a key file follows that file: a value under a key id it does not know makes it
re-read the file once, and it looks at the file's modification time at most once a second, so a
``gateway keys rotate`` in another process reaches a running ``serve`` without a restart.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.domain.unicode_forms import stored_forms
from gateway.crypto.envelope import kek_aad
from gateway.errors import KeyStoreError

_MAGIC = b"G1"
log = logging.getLogger(__name__)
_CHECK_EVERY = 1.0  # seconds between looks at the key file's modification time


class FieldCipher:
    """Encrypts and decrypts values with the active key; decrypts with any known key."""

    def __init__(self, keys: Mapping[str, bytes], active: str, index_key: bytes,
                 source: tuple[Path, str | None] | None = None) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = time.monotonic()
        self._keks: dict[bytes, AESGCM] = {}
        self._set(keys, active, index_key)
        if source is not None:
            self._stamp = _stamp(source[0])

    def _set(self, keys: Mapping[str, bytes], active: str, index_key: bytes) -> None:
        if active not in keys:
            raise KeyStoreError(f"active key '{active}' is not among the data keys")
        for kid, key in keys.items():
            if len(key) != 32:
                raise KeyStoreError(f"data key '{kid}' must be 32 bytes, got {len(key)}")
        self._raw = dict(keys)
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}
        self._active = active
        self._prefix = _MAGIC + bytes([len(active.encode())]) + active.encode()
        self._index_key = index_key
        # Copied per token: keying an HMAC afresh for every value cost as much as hashing it (~1 us a claim).
        self._index_hmac = hmac.new(index_key, digestmod="sha256")

    def reload(self) -> bool:
        """Re-read the key file (or variable) this cipher came from; True if it could."""
        if self._source is None:
            return False
        with self._lock:
            path, env_var = self._source
            fresh = load_field_cipher(path, env_var)
            self._set(fresh.keys(), fresh.active_key_id, fresh.index_key)
            self._stamp, self._checked = _stamp(path), time.monotonic()
            self._keks.clear()
        return True

    def _follow_file(self) -> None:
        if self._source is None or time.monotonic() - self._checked < _CHECK_EVERY:
            return
        self._checked = time.monotonic()
        stamp = _stamp(self._source[0])
        if stamp == self._stamp:
            return
        try:
            self.reload()
        except KeyStoreError as exc:
            # Gone, half-written or unreadable while running: the keys in memory still encrypt and decrypt all
            # this process knew; failing every operation once a second for it would fail clients' files. Logged
            # once per change of the file; the next change is read again.
            self._stamp = stamp
            log.warning("keys.reload_failed error=%s: the keys loaded before stay in use; restore the file", exc)

    def keys(self) -> dict[str, bytes]:
        """The known master keys by id (for the key file writer)."""
        return dict(self._raw)

    @property
    def index_key(self) -> bytes:
        return self._index_key

    @property
    def active_key_id(self) -> str:
        return self._active

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        self._follow_file()
        nonce = os.urandom(12)
        return self._prefix + nonce + self._aead[self._active].encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        if blob[:2] != _MAGIC or len(blob) < 3:
            raise KeyStoreError("not a gateway ciphertext")
        n = blob[2]
        kid = blob[3:3 + n].decode()
        aead = self._aead.get(kid)
        if aead is None and self.reload():  # rotated by another process since we loaded the file
            aead = self._aead.get(kid)
        if aead is None:
            raise KeyStoreError(f"value was encrypted with unknown key '{kid}'")
        nonce, body = blob[3 + n:15 + n], blob[15 + n:]
        try:
            return aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise KeyStoreError(f"value does not decrypt with key '{kid}' (tampered or bound to another row)") \
                from None

    def blind_index(self, value: str, scope: str = "") -> str:
        """A keyed, deterministic token of a normalised value: equality search without plaintext.

        ``scope`` (a client id) gives each client its own tokens, so equal names do not link across clients.
        """
        self._follow_file()
        norm = " ".join(value.casefold().split())
        data = f"{scope}\x1f{norm}" if scope else norm
        mac = self._index_hmac.copy()
        mac.update(data.encode())
        return mac.hexdigest()[:32]

    def blind_indexes(self, value: str, scope: str = "") -> list[str]:
        """``blind_index`` of ``value`` in Unicode's composed and decomposed forms: names stored before every
        channel composed its input may be indexed decomposed."""
        return [self.blind_index(v, scope) for v in stored_forms(value)]

    def client_kek(self, client_id: str, key_id: str, wrapped: bytes) -> AESGCM:
        """A client's key (KEK) from its row in ``client_keys``, unwrapped with the master key (cached)."""
        kek = self._keks.get(wrapped)
        if kek is None:
            kek = AESGCM(self.decrypt(wrapped, kek_aad(client_id, key_id)))
            if len(self._keks) > 4096:
                self._keks.clear()
            self._keks[wrapped] = kek
        return kek

    def wrap_kek(self, client_id: str, key_id: str, kek: bytes) -> bytes:
        """A client key encrypted under the active master key, for ``client_keys.wrapped_kek``."""
        return self.encrypt(kek, kek_aad(client_id, key_id))


def key_id_of(blob: bytes) -> str | None:
    """The master key id a value of this module's layout names (None for another layout)."""
    if blob[:2] != _MAGIC or len(blob) < 3:
        return None
    return blob[3:3 + blob[2]].decode()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


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
        raise KeyStoreError(f"no data key file at {path}: restore it from the keys backup (docs/operations.md); "
                            "'gateway keys init' is only for a new installation: new keys cannot read data "
                            "stored under the old ones") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read data key file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
        keys = {str(k): base64.b64decode(v, validate=True) for k, v in doc["keys"].items()}
        from_file = None if source != str(path) else (path, env_var)
        return FieldCipher(keys, str(doc["active"]), base64.b64decode(doc["index_key"], validate=True), from_file)
    except KeyStoreError as exc:
        raise KeyStoreError(f"{source}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyStoreError(f"{source}: expected JSON with 'active', 'keys' and 'index_key' ({exc!r})") from None


def key_file_content(keys: Mapping[str, bytes], active: str, index_key: bytes) -> dict[str, object]:
    """The key file's JSON for a key set."""
    return {"active": active, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()},
            "index_key": base64.b64encode(index_key).decode()}
