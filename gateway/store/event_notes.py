"""Free text in the append-only history, sealed under the claim's own data key.

A client's cancel reason or a release reason is written by a person and may name the debtor ("Frau X hat
bezahlt"). ``claim_events`` is append-only and kept after an erasure, so such text is stored sealed with the
claim's DEK (``crypto/envelope``), like the claim's personal data: an erasure, which destroys that key, makes
it unreadable with the rest (crypto-shredding). The event's data holds ``reason_sealed`` (base64) instead of
``reason``; ``reveal`` turns it back for the readers that show history, and says ``reason_erased`` where the
key is gone. A claim whose key is already gone when the text comes gets ``reason_withheld``: the text is not
stored at all.

The erasure event's own reason cannot go under the key it destroys; ``erasure`` refuses a reason that contains
the debtor's data instead.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import Connection, and_, select

from gateway.crypto import envelope
from gateway.crypto.fieldcrypt import FieldCipher
from gateway.errors import KeyStoreError
from gateway.store.keys_store import claim_keys, client_keys

log = logging.getLogger(__name__)

SEALED, ERASED, WITHHELD = "reason_sealed", "reason_erased", "reason_withheld"


def _aad(claim_id: int, client_id: str) -> bytes:
    return f"note|{claim_id}|{client_id}".encode()


def claim_deks(conn: Connection, cipher: FieldCipher, claim_ids: Iterable[int]) -> dict[int, tuple[str, bytes]]:
    """The (client, DEK) of each claim whose key still exists; an erased claim (or client) is missing."""
    ids = sorted(set(claim_ids))
    out: dict[int, tuple[str, bytes]] = {}
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            select(claim_keys.c.claim_id, claim_keys.c.client_id, claim_keys.c.key_id, claim_keys.c.wrapped_dek,
                   client_keys.c.wrapped_kek)
            .join(client_keys, and_(client_keys.c.client_id == claim_keys.c.client_id,
                                    client_keys.c.key_id == claim_keys.c.key_id))
            .where(claim_keys.c.claim_id.in_(ids[start:start + 500]), client_keys.c.wrapped_kek.is_not(None)))
        for r in rows:
            cid = int(r.claim_id)
            try:
                kek = cipher.client_kek(r.client_id, r.key_id, bytes(r.wrapped_kek))
                out[cid] = (r.client_id, envelope.unwrap(kek, bytes(r.wrapped_dek),
                                                         envelope.dek_aad(cid, r.client_id)))
            except KeyStoreError as exc:  # its personal data does not open either
                log.warning("event_notes.key_unreadable claim=%d error=%s", cid, exc)
    return out


def seal_reasons(conn: Connection, cipher: FieldCipher, claim_ids: Iterable[int],
                 reason: str | None) -> dict[int, dict[str, Any]]:
    """Each claim's event data for ``reason``: sealed under its key, or withheld where the key is gone."""
    ids = list(claim_ids)
    if not reason:
        return {cid: {} for cid in ids}
    keys = claim_deks(conn, cipher, ids)
    out: dict[int, dict[str, Any]] = {}
    for cid in ids:
        if cid in keys:
            client_id, dek = keys[cid]
            sealed = envelope.seal(dek, reason.encode(), _aad(cid, client_id))
            out[cid] = {SEALED: base64.b64encode(sealed).decode("ascii")}
        else:
            out[cid] = {WITHHELD: True}
    return out


def seal_reason(conn: Connection, cipher: FieldCipher, claim_id: int, reason: str | None) -> dict[str, Any]:
    """``seal_reasons`` for one claim."""
    return seal_reasons(conn, cipher, [claim_id], reason)[claim_id]


def open_reason(keys: Mapping[int, tuple[str, bytes]], claim_id: int, sealed: object) -> str | None:
    """The reason sealed for ``claim_id``; None where its key is gone or the value does not open."""
    key = keys.get(claim_id)
    if key is None or not isinstance(sealed, str):
        return None
    try:
        return envelope.open_sealed(key[1], base64.b64decode(sealed, validate=True),
                                    _aad(claim_id, key[0])).decode()
    except (binascii.Error, ValueError, InvalidTag, KeyStoreError, UnicodeDecodeError):
        return None


def reveal_data(data: Mapping[str, Any], claim_id: int, keys: Mapping[int, tuple[str, bytes]]) -> dict[str, Any]:
    """Event data as readers show it: ``reason`` opened, or ``reason_erased`` where it cannot be."""
    out = {k: v for k, v in data.items() if k != SEALED}
    text = open_reason(keys, claim_id, data[SEALED])
    if text is None:
        out[ERASED] = True
    else:
        out["reason"] = text
    return out


def reveal(conn: Connection, cipher: FieldCipher, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` (dicts with ``claim_id`` and decoded ``data``) with their sealed reasons opened, in place."""
    sealed = [e for e in events if isinstance(e.get("data"), dict) and SEALED in e["data"]]
    if sealed:
        keys = claim_deks(conn, cipher, (int(e["claim_id"]) for e in sealed))
        for e in sealed:
            e["data"] = reveal_data(e["data"], int(e["claim_id"]), keys)
    return events
