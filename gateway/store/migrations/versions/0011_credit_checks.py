"""credit_checks: one row per credit check request (asked, answered from the cache, or refused by the rate
limit), which is also the client's audit log. The subject and the bureaus' answers are sealed under the
row's own data key, wrapped by the client's key (as claims are); deleting the row erases them.

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_checks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("interest", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("source_check_id", sa.BigInteger, nullable=True),
        sa.Column("subject_index", sa.String(32), nullable=True),
        sa.Column("subject_key", sa.String(32), nullable=False),
        sa.Column("colour", sa.String(8), nullable=True),
        sa.Column("incomplete", sa.Boolean, nullable=True),
        sa.Column("bureaus", sa.Text, nullable=True),
        sa.Column("key_id", sa.String(16), nullable=True),
        sa.Column("wrapped_dek", sa.LargeBinary, nullable=True),
        sa.Column("personal", sa.LargeBinary, nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_credit_checks_client_time", "credit_checks", ["client_id", "created_at"])
    op.create_index("ix_credit_checks_client_subject", "credit_checks", ["client_id", "subject_key", "created_at"])
    op.create_index("ix_credit_checks_client_index", "credit_checks", ["client_id", "subject_index"])


def downgrade() -> None:
    op.drop_table("credit_checks")
