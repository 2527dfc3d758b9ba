"""claims.sandbox: a sandbox client's claim (docs/sandbox.md), kept apart from production lists and exports
and never delivered to a real partner (the dispatcher checks this mark on every outbox row)

Only on claims: migration 0008 backfills claim_current with today's fold and metadata, so a column added to
it later breaks upgrading an older database, and lists join ``claims`` anyway; submissions are told apart
by their client id (``<client>.sandbox``).

Plain ADD COLUMN (no batch rebuild): ``claims`` keeps its append-only triggers, and adding a column with a
default fires none of them. No row existed for a sandbox client before this revision, so nothing to backfill.

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TABLES = ("claims",)


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("sandbox", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # Native DROP COLUMN (SQLite >= 3.35, PostgreSQL): a batch rebuild of claims would drop its triggers,
    # and one of submissions trips the foreign keys pointing at it.
    for table in reversed(_TABLES):
        op.execute(f"ALTER TABLE {table} DROP COLUMN sandbox")
