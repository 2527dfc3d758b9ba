"""Free-text reasons in the history sealed under the claim's key (``store/event_notes.py``).

Cancel and release reasons were kept in plain JSON in ``claim_events`` (append-only, kept after an erasure) and
in the ``cancel`` rows of the outbox (kept when done): a reason that named the debtor outlived the debtor's
erasure. This rewrites them as the code now writes them: ``reason_sealed`` under the claim's data key, or, for
a claim erased since, ``reason_withheld`` with the text dropped. The second time rows of ``claim_events`` are
rewritten (the first was 0009's for ``claims``): its append-only triggers are dropped and created again in
the migration's transaction. Needs the master key when there is anything to seal (``gateway db upgrade``).
The downgrade leaves the sealed values as they are: the code before reads such an event as one without a reason.

Revision ID: 0018
Revises: 0017
"""
import json
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_KINDS = ("cancelled", "cancel_requested", "released")
_events = sa.table("claim_events", sa.column("id", sa.BigInteger), sa.column("claim_id", sa.BigInteger),
                   sa.column("kind", sa.String), sa.column("data", sa.Text))
_outbox = sa.table("outbox", sa.column("id", sa.BigInteger), sa.column("operation", sa.String),
                   sa.column("payload", sa.Text))


def upgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(sa.select(_events.c.id, _events.c.claim_id, _events.c.data)
                         .where(_events.c.kind.in_(_KINDS), _events.c.data.like('%"reason"%'))).all()
    asked = conn.execute(sa.select(_outbox.c.id, _outbox.c.payload)
                         .where(_outbox.c.operation == "cancel", _outbox.c.payload.like('%"reason"%'))).all()
    events = [(i, c, d) for i, c, d in ((i, c, json.loads(d)) for i, c, d in found) if d.get("reason")]
    requests = [(i, p) for i, p in ((i, json.loads(p)) for i, p in asked) if p.get("reason")]
    if not events and not requests:
        return
    from gateway.store import event_notes, keys_store

    cipher = keys_store.cipher_for(context.config.attributes.get("engine"))

    def sealed(claim_id: int, doc: dict[str, Any]) -> str:
        reason = str(doc.pop("reason"))
        return json.dumps({**doc, **event_notes.seal_reason(conn, cipher, claim_id, reason)})

    if events:
        _triggers(drop=True)
        for event_id, claim_id, doc in events:
            conn.execute(sa.update(_events).where(_events.c.id == event_id).values(data=sealed(int(claim_id), doc)))
        _triggers(drop=False)
    for row_id, doc in requests:
        conn.execute(sa.update(_outbox).where(_outbox.c.id == row_id)
                     .values(payload=sealed(int(doc["claim_id"]), doc)))


def downgrade() -> None:
    pass  # see the module's text


def _triggers(*, drop: bool) -> None:
    # The same triggers as migration 0001 makes for claim_events.
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER claim_events_no_{action.lower()}" if drop else
                       f"CREATE TRIGGER claim_events_no_{action.lower()} BEFORE {action} ON claim_events "
                       f"BEGIN SELECT RAISE(ABORT, 'claim_events are append-only: {action} refused'); END")
    elif drop:
        op.execute("DROP TRIGGER claim_events_no_change ON claim_events")
    else:
        op.execute("CREATE TRIGGER claim_events_no_change BEFORE UPDATE OR DELETE ON claim_events "
                   "FOR EACH ROW EXECUTE FUNCTION claim_events_append_only()")
