"""Envelope encryption: client keys (client_keys), per-claim data keys and the blind name index (claim_keys);
every stored personal value re-encrypted under its own claim key.

This is the one time a row of the append-only ``claims`` table is rewritten: the append-only triggers are
dropped, each ``personal`` value is replaced by the same content sealed under a fresh per-claim key (and
``debtor_index`` is cleared: the index moved to ``claim_keys``, per client), and the triggers are created
again, all in the migration's transaction. Needs the master key: ``gateway db upgrade`` (or a start that
migrates) hands it in through ``keys_store.register_cipher``.

Revision ID: 0009
Revises: 0008
"""
from typing import Any

import msgspec
import sqlalchemy as sa
from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 500


def upgrade() -> None:
    op.create_table(
        "client_keys",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("wrapped_kek", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "claim_keys",
        sa.Column("claim_id", sa.BigInteger, sa.ForeignKey("claims.id"), primary_key=True, autoincrement=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary, nullable=False),
        sa.Column("name_index", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_claim_keys_client_key", "claim_keys", ["client_id", "key_id"])
    op.create_index("ix_claim_keys_client_name", "claim_keys", ["client_id", "name_index"])
    _rewrite(to_envelope=True)


def downgrade() -> None:
    _rewrite(to_envelope=False)  # back under the master key, where a claim's key still exists
    op.drop_index("ix_claim_keys_client_name", table_name="claim_keys")
    op.drop_index("ix_claim_keys_client_key", table_name="claim_keys")
    op.drop_table("claim_keys")
    op.drop_table("client_keys")


class _Personal(msgspec.Struct):
    debtor: dict[str, Any]


def _rewrite(*, to_envelope: bool) -> None:
    from gateway.crypto import envelope
    from gateway.domain.model import Debtor
    from gateway.store import keys_store
    from gateway.store.schema import claims

    conn = op.get_bind()
    if conn.execute(sa.select(sa.func.count()).select_from(claims)).scalar_one() == 0:
        return
    cipher = keys_store.cipher_for(context.config.attributes.get("engine"))
    rows_q = keys_store.claims_with_keys().with_only_columns(
        claims.c.id, claims.c.client_id, claims.c.creditor_reference, claims.c.personal,
        keys_store.claim_keys.c.wrapped_dek, keys_store.claim_keys.c.key_id.label("kek_id"),
        keys_store.client_keys.c.wrapped_kek)
    _triggers(drop=True)
    last = 0
    while True:
        batch = conn.execute(rows_q.where(claims.c.id > last).order_by(claims.c.id).limit(_BATCH)).mappings().all()
        if not batch:
            break
        last = batch[-1]["id"]
        new_keys = []
        for r in batch:
            aad = f"claim:{r['client_id']}\x1f{r['creditor_reference']}".encode()
            blob = bytes(r["personal"])
            if envelope.is_envelope(blob) == to_envelope:
                continue
            plain = keys_store.open_personal(cipher, r, aad)
            if plain is None:
                continue  # erased: nothing to bring back
            name = msgspec.convert(msgspec.json.decode(plain, type=_Personal).debtor, Debtor).display_name()
            if to_envelope:
                dek = envelope.new_key()
                value, index = envelope.seal(dek, plain, aad), None
                new_keys.append((r["id"], r["client_id"], dek, cipher.blind_index(name, r["client_id"]) if name else None))
            else:
                value, index = cipher.encrypt(plain, aad), cipher.blind_index(name) if name else None
            conn.execute(sa.update(claims).where(claims.c.id == r["id"]).values(personal=value, debtor_index=index))
        if new_keys:
            keys_store.insert_claim_keys(conn, cipher, new_keys)
    _triggers(drop=False)


def _triggers(*, drop: bool) -> None:
    # The same triggers as migration 0001 makes for claims.
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER claims_no_{action.lower()}" if drop else
                       f"CREATE TRIGGER claims_no_{action.lower()} BEFORE {action} ON claims "
                       f"BEGIN SELECT RAISE(ABORT, 'claims are append-only: {action} refused'); END")
    elif drop:
        op.execute("DROP TRIGGER claims_no_change ON claims")
    else:
        op.execute("CREATE TRIGGER claims_no_change BEFORE UPDATE OR DELETE ON claims "
                   "FOR EACH ROW EXECUTE FUNCTION claims_append_only()")
