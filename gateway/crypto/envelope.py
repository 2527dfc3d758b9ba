"""Envelope encryption of a claim's personal data, so that one claim or one client can be erased alone.

Three layers of keys (``docs/security.md`` "Keys, rotation and erasure"):

- the **master key** (``data-keys.json``, ``FieldCipher``) wraps each client's key;
- a **client key** (KEK, table ``client_keys``) wraps the data keys of that client's claims;
- a **data key** (DEK, random per claim, table ``claim_keys``) encrypts the claim's personal value.

``claims`` is append-only, so the value there never changes; deleting the claim's DEK row (erasure) or
the client's KEK (``keys destroy-client``) is what makes it unreadable: crypto-shredding.

Layouts: an envelope value is ``b"E1" | nonce (12) | ciphertext+tag`` under the claim's DEK; a wrapped
key is ``nonce (12) | ciphertext+tag`` under the wrapping key, bound by AAD to what it belongs to.
Values of the older format (``b"G1"``, encrypted with the master key directly) start differently.
"""

from __future__ import annotations

import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import KeyStoreError

ENVELOPE = b"E1"
ERASED_NAME = "[erased]"  # what readers show where an erased claim's personal data was


def new_key() -> bytes:
    """A fresh random 256-bit key (a claim's DEK or a client's KEK)."""
    return secrets.token_bytes(32)


def is_envelope(blob: bytes) -> bool:
    return blob[:2] == ENVELOPE


def seal(dek: bytes, plaintext: bytes, aad: bytes, nonce: bytes | None = None) -> bytes:
    """``plaintext`` encrypted under a claim's data key, in the envelope layout.

    ``nonce``: 12 fresh random bytes the caller read together with the key (``new_key_and_nonce``); never reuse.
    """
    if nonce is None:
        nonce = os.urandom(12)
    return ENVELOPE + nonce + AESGCM(dek).encrypt(nonce, plaintext, aad)


def new_key_and_nonce() -> tuple[bytes, bytes]:
    """A fresh data key and a nonce for its one ``seal``, from one read of the OS's random source."""
    raw = os.urandom(44)
    return raw[:32], raw[32:]


def open_sealed(dek: bytes, blob: bytes, aad: bytes) -> bytes:
    """The plaintext of an envelope value."""
    if not is_envelope(blob):
        raise KeyStoreError("not an envelope value")
    try:
        return AESGCM(dek).decrypt(blob[2:14], blob[14:], aad)
    except InvalidTag:
        raise KeyStoreError("envelope value does not decrypt with its data key (tampered or bound to another row)") \
            from None


def wrap(kek: AESGCM, key: bytes, aad: bytes) -> bytes:
    """``key`` encrypted under ``kek`` and bound to ``aad``."""
    nonce = os.urandom(12)
    return nonce + kek.encrypt(nonce, key, aad)


def wrap_all(kek: AESGCM, keys: list[bytes], aads: list[bytes]) -> list[bytes]:
    """``wrap`` for many keys, with the nonces read from the OS in one call (one syscall per key cost
    about as much as the encryption itself when a chunk of thousands of claims is stored)."""
    nonces = os.urandom(12 * len(keys))
    encrypt = kek.encrypt
    return [nonces[i:i + 12] + encrypt(nonces[i:i + 12], key, aad)
            for i, key, aad in zip(range(0, 12 * len(keys), 12), keys, aads)]


def unwrap(kek: AESGCM, wrapped: bytes, aad: bytes) -> bytes:
    """The key inside ``wrapped``."""
    try:
        return kek.decrypt(wrapped[:12], wrapped[12:], aad)
    except InvalidTag:
        raise KeyStoreError("a wrapped key does not open with its client key (tampered or misplaced)") from None


def dek_aad(claim_id: int, client_id: str) -> bytes:
    return f"dek:{client_id}\x1f{claim_id}".encode()


def kek_aad(client_id: str, key_id: str) -> bytes:
    return f"kek:{client_id}\x1f{key_id}".encode()
