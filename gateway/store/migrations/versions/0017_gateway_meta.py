"""gateway_meta: facts about the database itself. Its first, ``database_id``, is made once here (a random id):
each gateway node keeps the id of the database it works on in ``<var>/database-id`` and refuses to start on a
database with another id, or on an empty one where it has worked before (a wrong ``database.url``, a volume not
mounted, a database restored from another installation): started on such a database it would take files it
had already acknowledged as new and hand their claims over again. See ``services/database_identity.py``.

Revision ID: 0017
Revises: 0016
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "gateway_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.bulk_insert(meta, [{"key": "database_id", "value": secrets.token_hex(16)}])


def downgrade() -> None:
    op.drop_table("gateway_meta")
