"""leases (named, owned, expiring: one node at a time per client ingest, partner sync, status files);
sftp_uploads.node_id (whose SFTP front is receiving an upload)

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("sftp_uploads") as batch:
        batch.add_column(sa.Column("node_id", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sftp_uploads") as batch:
        batch.drop_column("node_id")
    op.drop_table("leases")
