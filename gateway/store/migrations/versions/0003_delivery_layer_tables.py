"""delivery layer tables (issue 6): partner sync cursors and applied partner updates

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partner_sync",
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updates", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("partner_id"),
    )
    op.create_table(
        "partner_updates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("update_id", sa.String(length=160), nullable=False),
        sa.Column("claim_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("partner_id", "update_id", name="uq_partner_updates_partner_update"),
    )
    op.create_index("ix_partner_updates_claim", "partner_updates", ["claim_id"])


def downgrade() -> None:
    op.drop_index("ix_partner_updates_claim", table_name="partner_updates")
    op.drop_table("partner_updates")
    op.drop_table("partner_sync")
