"""client_labels: each client's own label catalogue (name and colour) for the web console; an index of the
projection by client and partner for the claims list's partner filter.

Labels on claims stay in claim_labels (by name); a name used on a claim without a catalogue row (set over
SOAP, or before this migration) is shown in the default colour.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_labels",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("colour", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_current_client_partner_updated", "claim_current",
                    ["client_id", "partner_id", "updated_at", "claim_id"])


def downgrade() -> None:
    op.drop_index("ix_current_client_partner_updated", table_name="claim_current")
    op.drop_table("client_labels")
