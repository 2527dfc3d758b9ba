"""The reader family: every input format yields the same rows with their provenance.

A reader opens a file, reads its header at once (so a file without one fails before any row
is mapped) and then streams ``SourceRow``s; it never holds the whole file in memory (calamine
holds one sheet's cells in its compact Rust form). Readers are registered by format type in
``READERS``; the mapping's ``format.type`` picks one. ``open_reader`` first checks that the
file's leading bytes fit the declared type, and applies the format's row-skipping rules.
"""

from __future__ import annotations

import importlib
import os
import re
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import msgspec

from gateway.errors import ConfigError, InputError
from gateway.readers.sniff import check_kind

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec


class SourceRow(msgspec.Struct, frozen=True, gc=False):
    """One data record: ``row`` is its physical 1-based line (or sheet row) number in the file.

    ``sheet`` names the worksheet of a spreadsheet row, ``xpath`` the element an XML record came from.
    """

    row: int
    values: list[str]
    sheet: str | None = None
    xpath: str | None = None


class Reader(Protocol):
    """What every reader offers: the header, the data rows in file order, ``close`` (or ``with``)."""

    file: str
    header: list[str]
    header_row: int

    def __iter__(self) -> Iterator[SourceRow]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Reader: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


READERS: dict[str, str] = {
    "csv": "gateway.readers.csv_reader:CsvReader",
    "xlsx": "gateway.readers.spreadsheet:SpreadsheetReader",
    "xls": "gateway.readers.spreadsheet:SpreadsheetReader",
    "ods": "gateway.readers.spreadsheet:SpreadsheetReader",
    "xml": "gateway.readers.xml_reader:XmlReader",
    "fixed_width": "gateway.readers.fixed_width:FixedWidthReader",
}


def open_reader(path: str | os.PathLike[str], fmt: FormatSpec, *,
                date_columns: frozenset[str] = frozenset()) -> Reader:
    """Open ``path`` with the reader for ``fmt.type``; raises InputError if the file is unusable.

    ``date_columns`` names the columns the mapping reads as dates: a spreadsheet reader turns plain
    numbers in them (date serials without a date format) into dates.
    """
    target = READERS.get(fmt.type)
    if target is None:
        raise ConfigError(f"format type '{fmt.type}' is not supported (supported: {', '.join(READERS)})",
                          key="format.type")
    check_kind(path, fmt.type)
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    reader: Reader = (cls(path, fmt, date_columns=date_columns) if fmt.type in ("xlsx", "xls", "ods")
                      else cls(path, fmt))
    if fmt.skip_rows_where or fmt.footer_rows:
        try:
            reader = Filtered(reader, fmt)
        except BaseException:
            reader.close()
            raise
    return reader


class Filtered:
    """A reader without the rows the format says to ignore (a trailing sum row, footer lines)."""

    def __init__(self, inner: Reader, fmt: FormatSpec) -> None:
        self.inner, self.file, self.header, self.header_row = inner, inner.file, inner.header, inner.header_row
        self.delimiter: str | None = getattr(inner, "delimiter", None)  # a sniffed CSV delimiter, for the ack
        self.footer = fmt.footer_rows
        self.rules: list[tuple[int, re.Pattern[str]]] = []
        for column, pattern in (fmt.skip_rows_where or {}).items():
            where = [i for i, h in enumerate(inner.header) if h.strip().casefold() == column.strip().casefold()]
            if not where:
                raise InputError(f"format.skip_rows_where names column '{column}', which the header does not have",
                                 file=self.file, row=self.header_row, column=column)
            self.rules.append((where[0], re.compile(pattern)))

    def _keep(self, src: SourceRow) -> bool:
        for i, rx in self.rules:
            if i < len(src.values) and rx.fullmatch(src.values[i].strip()):
                return False
        return True

    def __iter__(self) -> Iterator[SourceRow]:
        held: deque[SourceRow] = deque()
        for src in self.inner:
            if not self._keep(src):
                continue
            held.append(src)
            if len(held) > self.footer:
                yield held.popleft()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Filtered:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
