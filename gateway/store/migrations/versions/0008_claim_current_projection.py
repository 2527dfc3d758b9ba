"""claim_current: each claim's current state and case account (state, stage, partner file number, amounts
in minor units, read marks), folded from its events and written with every event from now on; lists,
counts and "changed since" read it instead of the latest event of every claim. Backfilled here from the
event log by the same fold that `gateway db rebuild-projection` runs.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_MONEY = ("principal", "fees", "interest", "agency_costs", "paid_direct", "paid_agency", "payouts", "written_off",
          "open", "overpaid")


def upgrade() -> None:
    op.create_table(
        "claim_current",
        sa.Column("claim_id", sa.BigInteger, sa.ForeignKey("claims.id"), primary_key=True, autoincrement=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("creditor_reference", sa.String(128), nullable=False),
        sa.Column("submission_id", sa.BigInteger, nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("partner_file_number", sa.String(128), nullable=True),
        sa.Column("closing_reason", sa.String(64), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        *(sa.Column(f"{m}_minor", sa.BigInteger, nullable=False) for m in _MONEY),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_id", sa.BigInteger, nullable=False),
        sa.Column("changed_event_id", sa.BigInteger, nullable=False),
        sa.Column("seen_event_id", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_current_client_state_updated", "claim_current", ["client_id", "state", "updated_at", "claim_id"])
    op.create_index("ix_current_client_updated", "claim_current", ["client_id", "updated_at", "claim_id"])
    # The projection's own fold: a later change to it ships its own migration that rebuilds again.
    from gateway.store.projection import rebuild
    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_current_client_updated", table_name="claim_current")
    op.drop_index("ix_current_client_state_updated", table_name="claim_current")
    op.drop_table("claim_current")
