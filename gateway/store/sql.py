"""Small helpers shared by the store modules: bulk inserts on the driver, JSON, time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec
from sqlalchemy import (BigInteger, Boolean, Connection, Date, DateTime, Integer, LargeBinary, SmallInteger, String,
                        Table, Text, TypeDecorator)
from sqlalchemy.exc import DBAPIError

_encoder = msgspec.json.Encoder()
COPY_FROM_ROWS = 50  # fewer rows go as one executemany: COPY's set-up is not worth it for a handful


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def dumps(value: Any) -> str:
    return _encoder.encode(value).decode()


def loads(text: str | None) -> Any:
    return msgspec.json.decode(text) if text else None


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """executemany straight on the driver: the ORM and Core compile steps cost 2-5x on bulk paths.

    Values must already be in the driver's types (datetimes naive UTC on SQLite, aware on PostgreSQL,
    see ``db_time``).
    """
    if not rows:
        return
    cols = ", ".join(f'"{c}"' for c in columns)
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_FROM_ROWS:
        types = _binary_types(table, tuple(columns))
        if types is None:
            _copy(conn, f"COPY {table.name} ({cols}) FROM STDIN", rows)
        else:
            _copy(conn, f"COPY {table.name} ({cols}) FROM STDIN (FORMAT BINARY)", rows, types)
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f'INSERT INTO {table.name} ({cols}) VALUES ({", ".join([mark] * len(columns))})'
    conn.exec_driver_sql(sql, list(rows))


# Binary COPY: values go as the server stores them, instead of as text each side formats and parses (the client's
# CPU per claim row ~3.4 -> ~1 us, the server's less too). It needs every column's type up front; a table with a
# column type not listed here goes as text. Order matters: subclasses first.
_BINARY: tuple[tuple[type, str], ...] = ((BigInteger, "int8"), (SmallInteger, "int2"), (Integer, "int4"),
                                         (Text, "text"), (String, "varchar"), (LargeBinary, "bytea"),
                                         (Boolean, "bool"), (Date, "date"))
_binary_cache: dict[tuple[str, tuple[str, ...]], list[str] | None] = {}


def _binary_types(table: Table, columns: tuple[str, ...]) -> list[str] | None:
    key = (table.name, columns)
    if key in _binary_cache:
        return _binary_cache[key]
    out: list[str] | None = []
    for name in columns:
        col_type: Any = table.c[name].type
        if isinstance(col_type, TypeDecorator):
            col_type = col_type.impl
        found = ("timestamptz" if col_type.timezone else "timestamp") if isinstance(col_type, DateTime) else next(
            (pg for kind, pg in _BINARY if isinstance(col_type, kind)), None)
        if found is None:
            out = None
            break
        assert out is not None
        out.append(found)
    _binary_cache[key] = out
    return out


def _copy(conn: Connection, sql: str, rows: Sequence[Sequence[Any]], types: list[str] | None = None) -> None:
    # COPY on the transaction's own psycopg connection: one stream instead of a statement per row
    # (ingest stored a chunk ~2.5x slower on PostgreSQL than on SQLite with executemany).
    import psycopg  # here, not at the top: the driver and its libraries are ~20 MB a SQLite gateway never needs

    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:
            if types is not None:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        # The same exception classes as the executemany path (callers catch IntegrityError), and no more text
        # than it had: COPY's CONTEXT line can quote a row's value (``column name: "..."``), so the error is
        # rebuilt from the message and its DETAIL alone and not chained to the original.
        diag = exc.diag
        text = diag.message_primary or type(exc).__name__
        if diag.message_detail:
            text += f"\nDETAIL:  {diag.message_detail}"
        raise DBAPIError.instance(sql, None, type(exc)(text), psycopg.Error) from None


def db_time(conn: Connection, value: datetime) -> datetime:
    """A datetime as the driver wants it for ``bulk_insert`` (what UTCDateTime does for Core)."""
    value = value.astimezone(timezone.utc)
    return value.replace(tzinfo=None) if conn.dialect.name == "sqlite" else value


def aggregate_time(value: object) -> datetime:
    """A time from an aggregate (min, max) over a UTCDateTime column: aggregates bypass the column type, so SQLite
    gives naive UTC or its text; PostgreSQL an aware datetime."""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(dt, datetime)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)
