"""delivery layer tables (issue 6)

Revision ID: 0003
Revises: 0002
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder: the owning issue adds its tables here


def downgrade() -> None:
    pass
