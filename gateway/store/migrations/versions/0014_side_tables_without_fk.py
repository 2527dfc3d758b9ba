"""The derived side tables of a claim (claim_current, claim_keys, claim_fingerprints) lose their foreign key to
``claims``; the event log (claim_events) and the tables written by people (messages, documents, labels) keep
theirs.

Why: ``claims`` is append-only (its triggers refuse DELETE), so a claim a side row names can never go away;
what the foreign key still checked was that the store writes a side row only for a claim it has just
written in the same transaction, which ``claims.insert_prepared`` does by construction. On PostgreSQL that
check is a row lock on the parent per side row and cost a fifth of an ingest's server time (measured:
server CPU for 100k claims 10.9-12.1 s with the keys, 8.3 s without the three). The three tables are
derived: ``claim_current`` is a cache of the event log (``gateway db rebuild-projection`` folds it again
and removes a row that names no claim), ``claim_keys`` and ``claim_fingerprints`` are erased with a claim's
personal data.

SQLite cannot drop a constraint with ALTER TABLE. Its documented way to remove a FOREIGN KEY without
touching the stored rows (https://www.sqlite.org/lang_altertable.html, "making other kinds of table schema
changes") is to edit the table's definition in ``sqlite_schema`` with ``writable_schema`` on and to bump
``schema_version``, in one transaction; the edit is checked to remove exactly the one clause, and the
table's foreign keys are read back from the new definition.

Revision ID: 0014
Revises: 0013
"""
import re

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLES = ("claim_current", "claim_keys", "claim_fingerprints")
_CLAUSE = re.compile(r',\s*FOREIGN KEY\s*\(\s*"?claim_id"?\s*\)\s*REFERENCES\s+"?claims"?\s*\(\s*"?id"?\s*\)',
                     re.IGNORECASE)
_ADDED = ", \n\tFOREIGN KEY(claim_id) REFERENCES claims (id)"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _edit_sqlite(bind, drop=True)
        return
    for table in TABLES:
        for fk in sa.inspect(bind).get_foreign_keys(table):
            if fk["referred_table"] == "claims" and fk["name"]:
                op.drop_constraint(fk["name"], table, type_="foreignkey")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _edit_sqlite(bind, drop=False)
        return
    for table in TABLES:
        op.create_foreign_key(f"{table}_claim_id_fkey", table, "claims", ["claim_id"], ["id"])


def _edit_sqlite(bind: sa.Connection, *, drop: bool) -> None:
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    edits: dict[str, str] = {}
    for table in TABLES:
        sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                   (table,)).scalar_one()
        found = len(_CLAUSE.findall(sql))
        if drop:
            if found != 1:
                raise RuntimeError(f"{table}: expected one FOREIGN KEY to claims in its definition, found {found}")
            edits[table] = _CLAUSE.sub("", sql)
        elif found == 0:
            body, close = sql.rstrip().rsplit(")", 1)
            edits[table] = f"{body}{_ADDED}\n){close}"
    if not edits:
        return
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        for table, sql in edits.items():
            bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, table))
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    for table in edits:  # the new definitions parse, and say what they should
        # the table-valued form reads the schema when it runs: a plain PRAGMA statement cached by the driver
        # would answer from the definition it was prepared against
        keys = bind.exec_driver_sql("SELECT count(*) FROM pragma_foreign_key_list(?)", (table,)).scalar_one()
        if keys != (0 if drop else 1):
            raise RuntimeError(f"{table}: {keys} foreign keys after the edit")
