"""Outbox rows of ``send_message`` no longer carry the message's text: it stays encrypted in ``messages`` and
the dispatcher decrypts it when it sends the request. Rows written before kept the text in plain JSON, done
rows for good; this removes it from done and dead rows that name their message. Pending and leased rows keep
it (the code before this revision, after a downgrade, sends what the row carries). The downgrade restores
nothing: a dead row retried after it would go without its text, so retry dead messages before downgrading.

Revision ID: 0015
Revises: 0014
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("operation", sa.String),
                   sa.column("status", sa.String), sa.column("payload", sa.Text))


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_outbox.c.id, _outbox.c.payload)
                        .where(_outbox.c.operation == "send_message", _outbox.c.status.in_(("done", "dead")))).all()
    for row_id, payload in rows:
        doc = json.loads(payload)
        if "text" in doc and "message_id" in doc:
            del doc["text"]
            conn.execute(sa.update(_outbox).where(_outbox.c.id == row_id).values(payload=json.dumps(doc)))


def downgrade() -> None:
    pass  # the removed texts are in ``messages`` (encrypted); a done or dead row is never sent again as it is
