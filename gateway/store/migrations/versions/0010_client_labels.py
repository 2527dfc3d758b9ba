"""client_labels: each client's own label catalogue (name and colour) for the web console; web_sessions: the
console's server-side sessions (a logout ends them everywhere); indexes of the
projection by partner and client (the claims list's partner filter), by run and state (whether the partner
confirmed every claim of a run, in two index probes) and by run and claim (a run's claims in order).

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
    # partner first: a client's lists without a partner condition keep their own indexes (with the client
    # first, SQLite's planner took this wider one for them and sorted more slowly)
    op.create_index("ix_current_partner_client_updated", "claim_current",
                    ["partner_id", "client_id", "updated_at", "claim_id"])
    op.create_index("ix_current_submission_state", "claim_current", ["submission_id", "state"])
    op.create_index("ix_current_submission_claim", "claim_current", ["submission_id", "claim_id"])
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("login", sa.String(128), nullable=False),
        sa.Column("credential", sa.String(64), nullable=False, server_default=""),
        sa.Column("search", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_web_sessions_login", "web_sessions", ["login"])
    op.create_index("ix_web_sessions_expires", "web_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_expires", table_name="web_sessions")
    op.drop_index("ix_web_sessions_login", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("ix_current_submission_claim", table_name="claim_current")
    op.drop_index("ix_current_submission_state", table_name="claim_current")
    op.drop_index("ix_current_partner_client_updated", table_name="claim_current")
    op.drop_table("client_labels")
