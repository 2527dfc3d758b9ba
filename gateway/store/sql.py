"""Small helpers shared by the store modules: bulk inserts on the driver, JSON, time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec
from sqlalchemy import Connection, Table

_encoder = msgspec.json.Encoder()


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
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    cols = ", ".join(f'"{c}"' for c in columns)
    sql = f'INSERT INTO {table.name} ({cols}) VALUES ({", ".join([mark] * len(columns))})'
    conn.exec_driver_sql(sql, list(rows))


def db_time(conn: Connection, value: datetime) -> datetime:
    """A datetime as the driver wants it for ``bulk_insert`` (what UTCDateTime does for Core)."""
    value = value.astimezone(timezone.utc)
    return value.replace(tzinfo=None) if conn.dialect.name == "sqlite" else value
