"""bulk_insert on PostgreSQL goes through COPY: same rows, same exception classes, no row value in the error.

Runs on both databases (SQLite takes the executemany path, which must behave the same).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from gateway.store.db import make_engine, upgrade, write_tx
from gateway.store.schema import client_labels
from gateway.store.sql import COPY_FROM_ROWS, bulk_insert

PLANTED = "Erika-Planted-Mustermann"
COLUMNS = ("client_id", "name", "colour", "created_at")


def _rows(n: int, prefix: str = "label") -> list[tuple[Any, ...]]:
    t = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=timezone.utc)
    return [("demo", f"{prefix}-{i}", "red", t) for i in range(n)]


def _driver_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # bulk_insert takes driver values: naive UTC on SQLite (what db_time does)
    if conn.dialect.name == "sqlite":
        return [(*r[:3], r[3].replace(tzinfo=None)) for r in rows]
    return rows


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def test_many_rows_are_stored_as_given(engine: Engine) -> None:
    rows = _rows(COPY_FROM_ROWS * 3)
    with write_tx(engine) as conn:
        bulk_insert(conn, client_labels, COLUMNS, _driver_rows(conn, rows))
    with engine.connect() as conn:
        got = sorted(conn.execute(select(client_labels.c.name, client_labels.c.created_at)
                                  .where(client_labels.c.client_id == "demo")).all())
    assert sorted((r[1], r[3]) for r in rows) == got


def test_a_duplicate_is_an_integrity_error_and_nothing_is_stored(engine: Engine) -> None:
    rows = _rows(COPY_FROM_ROWS * 2)
    rows.append(rows[0])
    with pytest.raises(IntegrityError):
        with write_tx(engine) as conn:
            bulk_insert(conn, client_labels, COLUMNS, _driver_rows(conn, rows))
    with engine.connect() as conn:
        assert conn.execute(select(client_labels.c.name)).first() is None


def test_an_error_quotes_no_row_value(engine: Engine) -> None:
    rows = _rows(COPY_FROM_ROWS * 2)
    rows[7] = ("demo", f"{PLANTED}-" + "x" * 80, "red", rows[7][3])  # longer than the column's 64
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite does not enforce VARCHAR lengths: there is no error to look at")
    with pytest.raises(DBAPIError) as info:
        with write_tx(engine) as conn:
            bulk_insert(conn, client_labels, COLUMNS, _driver_rows(conn, rows))
    shown = "".join(traceback.format_exception(info.value))  # what a log with exc_info would hold
    assert "too long" in shown
    assert PLANTED not in shown


def test_binary_copy_types_are_the_migrated_schema_s(engine: Engine) -> None:
    """Binary COPY sends each value as the type derived from the model; the migrations must agree, table by table."""
    if engine.dialect.name != "postgresql":
        pytest.skip("binary COPY is PostgreSQL's")
    from sqlalchemy import text

    from gateway.store import keys_store, sql  # keys_store declares claim_keys
    from gateway.store.schema import metadata

    assert keys_store.claim_keys.metadata is metadata

    names = {"bigint": "int8", "integer": "int4", "smallint": "int2", "text": "text", "character varying": "varchar",
             "bytea": "bytea", "boolean": "bool", "date": "date", "timestamp with time zone": "timestamptz",
             "timestamp without time zone": "timestamp"}
    checked = 0
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        for table in metadata.sorted_tables:
            columns = tuple(c.name for c in table.columns)
            derived = sql._binary_types(table, columns)
            if derived is None:  # goes as text COPY, which the server parses whatever the type
                continue
            query = text("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_schema = :s AND table_name = :t")
            actual: dict[str, str] = dict(conn.execute(query, {"s": schema, "t": table.name}).all())
            assert [names.get(actual[c]) for c in columns] == derived, table.name
            checked += 1
    assert checked >= 10
