"""A benchmark's database: SQLite in a temp dir (``url`` None), or a throwaway PostgreSQL schema."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import create_engine, text


def in_schema(url: str | None, prefix: str, measure: Callable[[str | None], None]) -> None:
    """Run ``measure`` with a URL into a fresh schema of ``url`` (dropped afterwards), or with None."""
    if not url:
        measure(None)
        return
    schema = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        measure(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
