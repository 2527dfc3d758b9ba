"""outbox.failing_since: when the row's current run of failed attempts began. The dispatcher's retry window
(``retry_for_seconds``) runs from it instead of from ``created_at``: a row that waited before its first try (a
request behind its claim's batch through a long outage, a row queued while its partner's lane was busy) keeps
its whole window, and an operator's retry clears it instead of rewriting when the row was queued. Rows failing
now get their ``created_at``, which is what the window ran from until this revision.

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
    outbox = sa.table("outbox", sa.column("status", sa.String), sa.column("attempts", sa.Integer),
                      sa.column("created_at", sa.DateTime(timezone=True)),
                      sa.column("failing_since", sa.DateTime(timezone=True)))
    op.execute(sa.update(outbox).where(outbox.c.status.in_(("pending", "leased")), outbox.c.attempts > 0)
               .values(failing_since=outbox.c.created_at))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("failing_since")
