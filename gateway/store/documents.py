"""Documents sent with a claim (invoice PDF, photos, dunning letters), encrypted at rest.

The canonical claim carries each document's metadata (name, media type, sha256, size); the bytes
live here, encrypted and bound to their claim and digest, for the delivery layer to forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from gateway.crypto.fieldcrypt import FieldCipher
from gateway.store.schema import documents
from gateway.store.sql import bulk_insert, db_time, utcnow


def _aad(claim_id: int, sha256: str) -> bytes:
    return f"document:{claim_id}:{sha256}".encode()


def add_many(conn: Connection, cipher: FieldCipher, rows: Sequence[tuple[int, str, str, str, str, str, bytes]],
             now: datetime | None = None) -> None:
    """Store (claim_id, client_id, name, media_type, kind, sha256, content) rows in the caller's transaction."""
    t = db_time(conn, now or utcnow())
    bulk_insert(conn, documents, ("claim_id", "client_id", "name", "media_type", "kind", "sha256", "size", "data",
                                  "created_at"),
                [(cid, client, name, media, kind, sha, len(data), cipher.encrypt(data, _aad(cid, sha)), t)
                 for cid, client, name, media, kind, sha, data in rows])


def for_claims(conn: Connection, cipher: FieldCipher, claim_ids: Sequence[int], *,
               content: bool = True) -> dict[int, list[dict[str, Any]]]:
    """Each claim's documents in the order sent; ``content`` decrypts the bytes too."""
    out: dict[int, list[dict[str, Any]]] = {}
    ids = list(claim_ids)
    cols = [documents.c.id, documents.c.claim_id, documents.c.name, documents.c.media_type, documents.c.kind,
            documents.c.sha256, documents.c.size] + ([documents.c.data] if content else [])
    for i in range(0, len(ids), 500):
        q = select(*cols).where(documents.c.claim_id.in_(ids[i:i + 500])).order_by(documents.c.id)
        for r in conn.execute(q).mappings():
            doc = dict(r)
            if content:
                doc["data"] = cipher.decrypt(r["data"], _aad(r["claim_id"], r["sha256"]))
            out.setdefault(r["claim_id"], []).append(doc)
    return out
