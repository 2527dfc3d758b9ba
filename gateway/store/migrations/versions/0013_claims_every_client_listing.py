"""ix_claims_sandbox_created: the every-client claims list (operator pages, `gateway claims list` without a
client) in created order, newest first, without sorting every claim: production and sandbox claims are kept
apart by ``claims.sandbox``, so the list's one condition and its order are this index's columns.

Revision ID: 0013
Revises: 0012
"""
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_claims_sandbox_created", "claims", ["sandbox", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_claims_sandbox_created", table_name="claims")
