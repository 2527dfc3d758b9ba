"""claim_fingerprints: a keyed fingerprint of each claim's canonical content, so a resend of a known
reference can be told apart as identical (existing) or conflicting. A table of its own because
``claims`` is append-only (triggers refuse UPDATE) and claims stored before this revision have none.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "claim_fingerprints",
        sa.Column("claim_id", sa.BigInteger, sa.ForeignKey("claims.id"), primary_key=True),
        # "<version>:<hex HMAC-SHA256>"; the version names the canonical form it was computed over
        sa.Column("fingerprint", sa.String(80), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("claim_fingerprints")
