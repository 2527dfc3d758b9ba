"""Printing for the CLI: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(decimal_format="string")


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError(f"cannot encode {type(value).__name__}")


def print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value, enc_hook=_default).decode() + "\n")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (date, Decimal)):
        return str(value)
    return str(value)


def print_table(rows: Sequence[Mapping[str, Any]] | Sequence[Any], columns: Sequence[str], *, empty: str = "(none)") -> None:
    if not rows:
        print(empty)
        return
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def print_fields(pairs: Iterable[tuple[str, Any]]) -> None:
    items = list(pairs)
    width = max((len(k) for k, _ in items), default=0)
    for k, v in items:
        print(f"{k.ljust(width)}  {cell(v)}")


def money(minor: int | None, currency: str | None) -> str:
    if minor is None:
        return ""
    from gateway.domain.model import from_minor
    return f"{from_minor(minor, currency or 'EUR')} {currency or ''}".strip()
