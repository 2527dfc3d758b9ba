"""Client keys and per-claim data keys (migration 0009); see ``crypto/envelope.py`` for the scheme.

Unlike ``claims``, these are ordinary tables: deleting a claim's row here (erasure) or a client's
wrapped key (``keys destroy-client``) is what makes the personal value in ``claims`` unreadable.
A claim's blind name index lives here too (``name_index``), so that it goes with the key on erasure.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (BigInteger, Column, Connection, DateTime, Engine, Index, LargeBinary, RowMapping,
                        Select, String, Table, and_, bindparam, func, select)
from sqlalchemy.exc import IntegrityError

from gateway.crypto import envelope
from gateway.crypto.fieldcrypt import FieldCipher
from gateway.errors import KeyStoreError
from gateway.store.schema import claims, metadata
from gateway.store.sql import bulk_insert, utcnow

client_keys = Table(
    "client_keys", metadata,
    Column("client_id", String(64), primary_key=True),
    Column("key_id", String(16), primary_key=True),  # c1, c2, ... per client
    Column("wrapped_kek", LargeBinary, nullable=True),  # under the master key; NULL once destroyed
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("destroyed_at", DateTime(timezone=True), nullable=True),
)

claim_keys = Table(
    "claim_keys", metadata,
    # no foreign key to claims (migration 0014): claims are never deleted; see schema.claim_current
    Column("claim_id", BigInteger, primary_key=True, autoincrement=False),
    Column("client_id", String(64), nullable=False),
    Column("key_id", String(16), nullable=False),  # the client key that wraps this DEK
    Column("wrapped_dek", LargeBinary, nullable=False),
    Column("name_index", String(32), nullable=True),  # blind index of the debtor's name, per client
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_claim_keys_client_key", "client_id", "key_id"),
    Index("ix_claim_keys_client_name", "client_id", "name_index"),
)


# The master key of each engine's gateway, for migrations that re-encrypt (0009): Alembic hands a
# migration only the engine, and bootstrap builds the engine and knows the key files.
_CIPHERS: "weakref.WeakKeyDictionary[Engine, Callable[[], FieldCipher]]" = weakref.WeakKeyDictionary()


def register_cipher(engine: Engine, load: Callable[[], FieldCipher]) -> None:
    """Tell migrations of ``engine`` how to load the master key."""
    _CIPHERS[engine] = load


def cipher_for(engine: Engine | None) -> FieldCipher:
    """The master key registered for ``engine`` (a migration that must re-encrypt needs it)."""
    load = _CIPHERS.get(engine) if engine is not None else None
    if load is None:
        raise KeyStoreError("this migration re-encrypts stored values and needs the data keys: "
                            "run it with 'gateway db upgrade'")
    return load()


def claims_with_keys() -> Select[Any]:
    """``select(claims)`` plus what decrypting a row needs: its wrapped DEK and its client's wrapped KEK."""
    return (select(claims, claim_keys.c.wrapped_dek, claim_keys.c.key_id.label("kek_id"),
                   client_keys.c.wrapped_kek)
            .select_from(claims.outerjoin(claim_keys, claim_keys.c.claim_id == claims.c.id)
                         .outerjoin(client_keys, and_(client_keys.c.client_id == claim_keys.c.client_id,
                                                      client_keys.c.key_id == claim_keys.c.key_id))))


def open_personal(cipher: FieldCipher, row: Any, aad: bytes) -> bytes | None:
    """A claim row's personal plaintext; None when its key was destroyed (erased claim or client)."""
    blob = bytes(row["personal"])
    if not envelope.is_envelope(blob):
        return cipher.decrypt(blob, aad)  # stored before migration 0009 rewrote every value
    dek = row.get("dek")  # a prepared, not yet stored claim carries its key itself
    if dek is None:
        wrapped, kek_row = row.get("wrapped_dek"), row.get("wrapped_kek")
        if wrapped is None or kek_row is None:
            return None
        kek = cipher.client_kek(row["client_id"], row["kek_id"], bytes(kek_row))
        dek = envelope.unwrap(kek, bytes(wrapped), envelope.dek_aad(row["id"], row["client_id"]))
    return envelope.open_sealed(dek, blob, aad)


# built once (run on every intake with the client id as parameter: its cache key and compiled form are reused)
_ACTIVE_KEK = (select(client_keys.c.key_id, client_keys.c.wrapped_kek)
               .where(client_keys.c.client_id == bindparam("client_id"), client_keys.c.wrapped_kek.is_not(None))
               .order_by(client_keys.c.created_at.desc(), client_keys.c.key_id.desc())
               # shared lock (PostgreSQL): a client-key rotation waits for this intake to commit
               .limit(1).with_for_update(read=True))


def active_kek(conn: Connection, cipher: FieldCipher, client_id: str) -> tuple[str, AESGCM]:
    """The client's current key (the newest not destroyed), made on first use; (key id, key)."""
    for _ in range(3):
        row = conn.execute(_ACTIVE_KEK, {"client_id": client_id}).first()
        if row is not None:
            return row[0], cipher.client_kek(client_id, row[0], bytes(row[1]))
        try:
            add_kek(conn, cipher, client_id)
        except IntegrityError:  # another process made it first: read theirs
            continue
    raise KeyStoreError(f"cannot make a client key for '{client_id}'")


def add_kek(conn: Connection, cipher: FieldCipher, client_id: str, now: datetime | None = None) -> str:
    """A new client key, which becomes the client's current one; returns its id."""
    n = conn.execute(select(func.count()).select_from(client_keys)
                     .where(client_keys.c.client_id == client_id)).scalar_one()
    kid = f"c{int(n) + 1}"
    with conn.begin_nested():
        conn.execute(client_keys.insert().values(
            client_id=client_id, key_id=kid, wrapped_kek=cipher.wrap_kek(client_id, kid, envelope.new_key()),
            created_at=now or utcnow()))
    return kid


def insert_claim_keys(conn: Connection, cipher: FieldCipher,
                      rows: Sequence[tuple[int, str, bytes, str | None]], now: datetime | None = None) -> None:
    """Store (claim id, client id, raw DEK, name index) rows, each DEK wrapped by its client's current key."""
    keks: dict[str, tuple[str, AESGCM]] = {}
    out: list[tuple[Any, ...]] = []
    t: Any = now or utcnow()
    if conn.dialect.name == "sqlite":
        t = t.isoformat(" ")  # what sqlite3's datetime adapter stores, done once instead of per row
    by_client: dict[str, list[tuple[int, bytes, str | None]]] = {}
    for cid, client_id, dek, name in rows:
        by_client.setdefault(client_id, []).append((cid, dek, name))
    for client_id, group in by_client.items():
        if client_id not in keks:
            keks[client_id] = active_kek(conn, cipher, client_id)
        kid, kek = keks[client_id]
        prefix = f"dek:{client_id}\x1f"  # envelope.dek_aad, formatted once per client
        wrapped = envelope.wrap_all(kek, [dek for _, dek, _ in group], [f"{prefix}{cid}".encode() for cid, _, _ in group])
        out.extend((cid, client_id, kid, w, name, t) for (cid, _, name), w in zip(group, wrapped))
    bulk_insert(conn, claim_keys, ("claim_id", "client_id", "key_id", "wrapped_dek", "name_index", "created_at"),
                out)


def name_matches(tokens: list[str]) -> Any:
    """A condition on ``claims.id``: the claim's debtor name has one of these blind indexes."""
    return claims.c.id.in_(select(claim_keys.c.claim_id).where(claim_keys.c.name_index.in_(tokens)))


def kek_rows(conn: Connection, client_id: str | None = None) -> list[RowMapping]:
    """Client key rows (all clients, or one), oldest first."""
    q = select(client_keys).order_by(client_keys.c.client_id, client_keys.c.created_at, client_keys.c.key_id)
    if client_id is not None:
        q = q.where(client_keys.c.client_id == client_id)
    return list(conn.execute(q).mappings())
