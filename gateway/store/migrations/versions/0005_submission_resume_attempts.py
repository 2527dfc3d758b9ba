"""submissions.resume_attempts: how often start-up resumed a submission that never finished

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a column's constraints in place; PostgreSQL adds it directly
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("resume_attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("resume_attempts")
