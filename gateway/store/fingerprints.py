"""Claim fingerprints: tell an identical resend of a known reference from a conflicting one.

A fingerprint is HMAC-SHA256 over msgspec's deterministic JSON of the claim as the client sent it
(debtor and memo included, the gateway-assigned ``partner_id`` left out), stored per claim in
``claim_fingerprints`` in the transaction that inserts the claim. It is keyed, not a plain hash: a
plain hash of a claim would let anyone holding the database confirm a guessed debtor by hashing it.

The fingerprint is only the fast path. When it differs (or is missing: claims stored before
migration 0007), the stored claim is decrypted and compared field by field; that comparison decides,
so amounts equal in value but written with another scale (125.5, 125.50) are not a conflict. What
leaves this module are canonical field names, never values.
"""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, cast

import msgspec
from sqlalchemy import Connection, RowMapping, select

from gateway.crypto.fieldcrypt import FieldCipher
from gateway.domain.model import Claim
from gateway.store import claims as claim_store
from gateway.store.claims import PreparedClaim
from gateway.store.schema import claim_fingerprints
from gateway.store.sql import bulk_insert

VERSION = "f1"  # names the canonical form; a fingerprint of another version is compared field by field
_KEY_LABEL = "claim-fingerprint-key:v1"
_encoder = msgspec.json.Encoder(order="deterministic")


_keys: dict[bytes, Any] = {}  # blind-index key -> keyed HMAC-SHA256 of the fingerprint key, copied per claim


def _key(cipher: FieldCipher) -> Any:
    # Derived from the blind-index key (HMAC under it of a fixed label): that key does not change when
    # data keys rotate, so fingerprints stay comparable across a rotation. Kept as a keyed HMAC object and
    # copied per claim: keying one afresh per claim cost as much as hashing the claim.
    mac = _keys.get(cipher.index_key)
    if mac is None:
        mac = hmac.new(cipher.blind_index(_KEY_LABEL).encode(), digestmod="sha256")
        if len(_keys) > 16:
            _keys.clear()
        _keys[cipher.index_key] = mac
    return mac


def fingerprint(cipher: FieldCipher, claim: Claim) -> str:
    """``<version>:<hex>`` of the claim's canonical content."""
    mac = _key(cipher).copy()
    mac.update(_encoder.encode(claim if claim.partner_id is None else msgspec.structs.replace(claim, partner_id=None)))
    return f"{VERSION}:{mac.hexdigest()}"


def claim_of_prepared(cipher: FieldCipher, cols: PreparedClaim) -> Claim:
    """The canonical claim of prepared store columns (see claims.prepare_claim), personal data decrypted."""
    row = {"client_id": cols[0], "creditor_reference": cols[1], "personal": cols[11], "body": cols[12],
           "dek": cols[15]}
    return claim_store.decode(cast(RowMapping, row), cipher)


def _plain(claim: Claim) -> dict[str, Any]:
    # Decimals stay Decimal so that 125.5 == 125.50; omitted defaults compare equal to absent ones; text in
    # Unicode's composed form, so that a claim stored decomposed (before every channel composed its input) and
    # sent again composed is the same data.
    plain = msgspec.to_builtins(msgspec.structs.replace(claim, partner_id=None), builtin_types=(Decimal, date))
    return cast(dict[str, Any], _composed(plain))


def _composed(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.isascii() else unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {k: _composed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_composed(v) for v in value]
    return value


def differing_fields(stored: Claim, sent: Claim) -> list[str]:
    """Canonical names of the fields that differ (debtor fields as ``debtor.<field>``), sorted."""
    a, b = _plain(stored), _plain(sent)
    out: list[str] = []
    for name in sorted(a.keys() | b.keys()):
        if a.get(name) == b.get(name):
            continue
        if name == "debtor":
            da, db = a.get(name) or {}, b.get(name) or {}
            out.extend(f"debtor.{k}" for k in sorted(da.keys() | db.keys()) if da.get(k) != db.get(k))
        else:
            out.append(name)
    return out


def insert(conn: Connection, pairs: Iterable[tuple[int, str]]) -> None:
    """Store (claim id, fingerprint) pairs in the caller's transaction."""
    bulk_insert(conn, claim_fingerprints, ("claim_id", "fingerprint"), list(pairs))


def stored(conn: Connection, claim_ids: Sequence[int]) -> dict[int, str]:
    """The fingerprints stored for these claims (claims stored before migration 0007 have none)."""
    out: dict[int, str] = {}
    ids = list(claim_ids)
    for i in range(0, len(ids), 500):
        q = select(claim_fingerprints.c.claim_id, claim_fingerprints.c.fingerprint).where(
            claim_fingerprints.c.claim_id.in_(ids[i:i + 500]))
        out.update({int(cid): fp for cid, fp in conn.execute(q)})
    return out


def compare_resends(conn: Connection, cipher: FieldCipher,
                    resends: Sequence[tuple[int, Claim, str]]) -> list[list[str]]:
    """For each (stored claim id, claim sent again, its fingerprint): the fields that differ ([] = same data)."""
    known = stored(conn, [cid for cid, _, _ in resends])
    slow = {cid for cid, _, fp in resends if known.get(cid) != fp}
    rows = {row["id"]: claim_store.decode(row, cipher) for row in claim_store.rows_by_ids(conn, sorted(slow))}
    return [differing_fields(rows[cid], claim) if cid in slow else [] for cid, claim, _ in resends]
