"""The reader family: every input format yields the same rows with their provenance.

A reader opens a file, reads its header at once (so a file without one fails before any row
is mapped) and then streams ``SourceRow``s. Readers are registered by format type in
``READERS``; the mapping's ``format.type`` picks one. ``open_reader`` first checks that the
file's leading bytes fit the declared type (and that a spreadsheet's declared size fits
``limits``), then opens the reader where it cannot hurt the gateway: formats whose parser is native
code that can abort the process or take gigabytes on a hostile file (``ISOLATED``: spreadsheets and
XML) run in a child process under memory, CPU and time limits (``isolated``); CSV and fixed width
(pure Python, bounded by line and field limits) run here. Whatever a reader raises that is not a
``GatewayError`` becomes an ``InputError``: a failed ack, never a crash. Last, the format's
row-skipping rules apply.
"""

from __future__ import annotations

import importlib
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import msgspec

from gateway.config import LimitsConfig
from gateway.errors import ConfigError, GatewayError, InputError
from gateway.readers.sniff import check_kind

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec

# Run in a child process whatever reader is registered for them (see the module docstring).
ISOLATED = frozenset({"xlsx", "xls", "ods", "xml"})


class SourceRow(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One data record: ``row`` is its physical 1-based line (or sheet row) number in the file.

    ``sheet`` names the worksheet of a spreadsheet row, ``xpath`` the element an XML record came from.
    ``unsaved`` lists the positions in ``values`` of cells that hold a formula without a saved value (a
    workbook written by a program that does not calculate): their text is empty, but not because the
    client left them empty, and the mapping says so where it reads one. ``whole4`` lists the positions of
    number cells (not text) holding a whole number of four digits, 1000-9999: a German postcode there lost
    its leading zero when the spreadsheet stored it as a number (01067 -> 1067), which the mapping puts back.
    ``percent`` lists the positions of number cells shown as a percentage (the cell holds 0.05 for 5 %).
    ``hidden``: the sheet hides the row (a filter, or by hand), so the client did not see it when it saved.
    ``errors`` maps the positions of cells that show an error value (``#N/A`` of a lookup that found nothing,
    ``#DIV/0!``) to that value: their text is empty, and the mapping names the error where it reads one.
    """

    row: int
    values: list[str]
    sheet: str | None = None
    xpath: str | None = None
    unsaved: list[int] | None = None
    whole4: list[int] | None = None
    errors: dict[int, str] | None = None
    percent: list[int] | None = None
    hidden: bool = False


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
    "xlsx": "gateway.readers.xlsx_stream:XlsxStreamReader",
    "xls": "gateway.readers.spreadsheet:SpreadsheetReader",
    "ods": "gateway.readers.ods_stream:OdsStreamReader",
    "xml": "gateway.readers.xml_reader:XmlReader",
    "fixed_width": "gateway.readers.fixed_width:FixedWidthReader",
}


def open_reader(path: str | os.PathLike[str], fmt: FormatSpec, *, date_columns: frozenset[str] = frozenset(),
                limits: LimitsConfig | None = None) -> Reader:
    """Open ``path`` with the reader for ``fmt.type``; raises InputError if the file is unusable.

    ``date_columns`` names the columns the mapping reads as dates: a spreadsheet reader turns plain
    numbers in them (date serials without a date format) into dates. ``limits`` (the config's
    ``limits`` section; its defaults if None) bound the reader's child process and the sheet size.
    """
    limits = limits or LimitsConfig()
    if fmt.alternatives:  # one mapping for several formats of an export: read the file as what it is
        from msgspec.structs import replace

        from gateway.readers.sniff import resolve_type
        fmt = replace(fmt, type=resolve_type(path, list(fmt.alternatives)), alternatives=[])
    target = READERS.get(fmt.type)
    if target is None:
        raise ConfigError(f"format type '{fmt.type}' is not supported (supported: {', '.join(READERS)})",
                          key="format.type")
    check_kind(path, fmt.type, limits)
    reader: Reader
    if fmt.type in ISOLATED:
        from gateway.readers.isolated import IsolatedReader
        reader = IsolatedReader(target, path, fmt, limits, date_columns=date_columns)
    else:
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        reader = Guarded(_guarded(lambda: cls(path, fmt), fmt.type, str(path)), fmt.type)
    try:
        if len(reader.header) > limits.max_columns:
            raise InputError(f"the header has {len(reader.header)} columns (limit limits.max_columns = "
                             f"{limits.max_columns}): not a case file, or the wrong delimiter",
                             file=reader.file, row=reader.header_row or None)
        if fmt.skip_rows_where or fmt.footer_rows:
            reader = Filtered(reader, fmt)
    except BaseException:
        reader.close()
        raise
    return reader


def _guarded(open_: Callable[[], Reader], kind: str, file: str) -> Reader:
    try:
        return open_()
    except GatewayError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unexpected parser error means "this file cannot be read"
        raise _unreadable(kind, file, exc) from None


def _unreadable(kind: str, file: str, exc: Exception) -> InputError:
    from gateway.readers.isolated import unreadable
    return InputError(unreadable(kind, exc), file=file)


class Guarded:
    """An in-process reader whose unexpected exceptions (not ``GatewayError``) become ``InputError``."""

    def __init__(self, inner: Reader, kind: str) -> None:
        self.inner, self.kind = inner, kind
        self.file, self.header, self.header_row = inner.file, inner.header, inner.header_row
        self.delimiter: str | None = getattr(inner, "delimiter", None)

    def __iter__(self) -> Iterator[SourceRow]:
        if getattr(self.inner, "guards_itself", False):  # it raises only GatewayErrors: no layer per row
            return iter(self.inner)
        return self._guarded()

    def _guarded(self) -> Iterator[SourceRow]:
        try:
            yield from self.inner
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - see _guarded
            raise _unreadable(self.kind, self.file, exc) from None

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Guarded:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


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
        if not self.footer:  # the common case (a sum row matched by a rule): no rows held back
            return (src for src in self.inner if self._keep(src)) if self.rules else iter(self.inner)
        return self._held_back()

    def _held_back(self) -> Iterator[SourceRow]:
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
