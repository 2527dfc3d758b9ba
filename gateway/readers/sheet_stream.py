"""What the streaming XLSX and ODS readers share: XML fed in chunks, limits, calamine's row shape.

A subclass turns its sheet XML into ``(row number, texts from column A to the row's last cell,
first column with a cell)``, one row at a time, and never expands what it does not have to: gaps
between cells cost nothing, a cell beyond ``limits.max_columns`` or a row beyond ``limits.max_rows``
is refused before anything is allocated for it. This base class gives the rows the shape
``SpreadsheetReader`` (calamine) gives them, so a mapping sees the same header and cells with either:
calamine cuts a sheet to its used rectangle, so rows start at the leftmost column any cell of the
sheet uses, and a row with content right of the header is as wide as the rectangle. Both bounds are
global; they cost a second pass over the sheet only when a file needs them (no cell in column A
by the header row, or content beyond the header), never for an ordinary file.

XML is fed to lxml's pull parser in 64 KB chunks straight from the zip member; each finished row
is cleared and dropped. No DTD, no entities, no network; more than ``MAX_GAP_BYTES`` of XML without
a finished row (one row of millions of cells, megabytes of junk) is refused instead of built.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Generator, Iterator
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from lxml import etree

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.readers.base import SourceRow

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec

CHUNK = 1 << 16
MAX_GAP_BYTES = 16 << 20  # XML between two finished rows; a real row is a few KB
RawRow = tuple[int, list[str], int]  # row number, texts from column A, first column holding a cell
Events = Generator[tuple[str, etree._Element], None, None]


@lru_cache(maxsize=4)
def column_index(max_columns: int) -> dict[str, int]:
    """Column letters -> 0-based index for every column within the limit (A -> 0, AMJ -> 1023)."""
    table: dict[str, int] = {}
    for i in range(max_columns):
        n, name = i + 1, ""
        while n:
            n, rem = divmod(n - 1, 26)
            name = chr(65 + rem) + name
        table[name] = i
    return table


def column_name(index: int) -> str:
    """0-based column index -> letters."""
    n, name = index + 1, ""
    while n:
        n, rem = divmod(n - 1, 26)
        name = chr(65 + rem) + name
    return name


def xml_events(zf: zipfile.ZipFile, member: str, file: str, *, events: tuple[Literal["start", "end"], ...],
               tags: tuple[str, ...]) -> Events:
    """lxml pull-parser events for ``tags`` in one zip member, read in chunks (the member is never whole)."""
    parser = etree.XMLPullParser(events=events, tag=tags, resolve_entities=False, no_network=True,
                                 load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True)
    gap, first = 0, True
    with zf.open(member) as fh:
        while chunk := fh.read(CHUNK):
            if first:
                first = False
                if b"<!DOCTYPE" in chunk[:4096]:
                    raise InputError(f"part '{member}' has a DOCTYPE declaration; refused", file=file)
            parser.feed(chunk)
            got = False
            for event in parser.read_events():
                got = True
                yield event  # type: ignore[misc]  # only start/end events of elements were asked for
            gap = 0 if got else gap + len(chunk)
            if gap > MAX_GAP_BYTES:
                raise InputError(f"part '{member}' has more than {MAX_GAP_BYTES >> 20} MB of XML without a "
                                 "complete row: refused", file=file)
        parser.close()
        yield from parser.read_events()  # type: ignore[misc]


def drop(el: etree._Element) -> None:
    """Free a finished element and the finished siblings before it."""
    el.clear()
    parent = el.getparent()
    if parent is not None:
        while el.getprevious() is not None:
            del parent[0]


def pick_sheet(names: list[str], sheet: str | int | None, file: str) -> str:
    """The sheet the mapping names (by name, case-insensitive, or position from 1), as SpreadsheetReader picks it."""
    if not names:
        raise InputError("the workbook has no sheets", file=file)
    if sheet is None:
        return names[0]
    if isinstance(sheet, int):
        if sheet > len(names):
            raise InputError(f"the mapping reads sheet number {sheet}, but the workbook has {len(names)} "
                             f"sheet(s): {', '.join(names)}", file=file)
        return names[sheet - 1]
    for name in names:
        if name == sheet or name.strip().casefold() == sheet.strip().casefold():
            return name
    raise InputError(f"the mapping reads sheet '{sheet}', but the workbook has only: "
                     f"{', '.join(repr(n) for n in names)}", file=file)


class StreamSheetReader:
    """Header and rows of one sheet; subclasses open the file, pick the sheet and implement ``_raw_rows``."""

    file: str
    sheet: str
    header: list[str]
    header_row: int
    kind = "spreadsheet"

    def __init__(self, path: str | os.PathLike[str], fmt: FormatSpec, *,
                 date_columns: frozenset[str] = frozenset(), limits: LimitsConfig | None = None) -> None:
        self.file = str(path)
        self._decimal = fmt.decimal_separator
        self.limits = limits or LimitsConfig()
        self.date_cols: frozenset[int] = frozenset()  # physical columns whose plain numbers are date serials
        self._bounds: tuple[int, int] | None = None
        self._seen_min = 1 << 30
        self._zip: zipfile.ZipFile | None = None
        try:
            self._zip = zipfile.ZipFile(self.file)
            self._open(fmt.sheet)
            self._rows = self._raw_rows()
            wanted = {c.strip().casefold() for c in date_columns}
            if fmt.header_row == 0:
                self.header, self.header_row = list(fmt.columns or []), 0
                self._first: RawRow | None = self._pull()
                names = [h.strip().casefold() for h in self.header]
                self.date_cols = frozenset(i for i, h in enumerate(names) if h in wanted)
                if self._first is not None and self._left() != 0:
                    self.date_cols = frozenset(i + self._left() for i, h in enumerate(names) if h in wanted)
                    self._rows = self._raw_rows()  # read again: the first row was worded for column A
                    self._first = self._pull()
            else:
                self._first = None
                self.header, self.header_row = self._read_header(fmt.header_row)
                left = self._left()
                self.date_cols = frozenset(i + left for i, h in enumerate(self.header)
                                           if h.strip().casefold() in wanted)
        except InputError:
            self.close()
            raise
        except (etree.XMLSyntaxError, zipfile.BadZipFile, OSError, EOFError, NotImplementedError,
                ValueError, KeyError) as exc:
            self.close()
            raise InputError(f"cannot read the {self.kind} file: {_reason(exc)}", file=self.file) from None
        except BaseException:
            self.close()
            raise

    # -- subclasses
    def _open(self, sheet: str | int | None) -> None:
        raise NotImplementedError

    def _raw_rows(self, bounds_only: bool = False) -> Iterator[RawRow]:
        """(row number, texts from column A, first column holding a cell); ``bounds_only``: repeats once."""
        raise NotImplementedError

    # -- shape
    def _pull(self) -> RawRow | None:
        raw = next(self._rows, None)
        if raw is not None and raw[2] < self._seen_min:
            self._seen_min = raw[2]
        return raw

    def _scan(self) -> tuple[int, int]:
        """The leftmost and rightmost column any cell of the sheet uses (a second pass, only when needed)."""
        if self._bounds is None:
            left, right = 1 << 30, -1
            for _, values, first in self._raw_rows(bounds_only=True):
                left, right = min(left, first), max(right, len(values) - 1)
            self._bounds = (min(left, self._seen_min), right)
        return self._bounds

    def _left(self) -> int:
        return 0 if self._seen_min == 0 else self._scan()[0]

    def _read_header(self, header_row: int) -> tuple[list[str], int]:
        while (raw := self._pull()) is not None:
            number, values, _ = raw
            if number < header_row or not "".join(values).strip():
                continue
            header = [v.strip() for v in values[self._left():]]
            while header and not header[-1]:
                header.pop()
            return header, number
        raise InputError(f"sheet '{self.sheet}' has no header row at or after row {header_row} "
                         "(the sheet is empty)", file=self.file)

    def __iter__(self) -> Iterator[SourceRow]:
        width, sheet = len(self.header), self.sheet
        left = self._left() if self._first is not None or self.header_row else 0
        try:
            if self._first is not None:
                raw, self._first = self._first, None
                yield from self._shape(raw, left, width, sheet)
            for raw in self._rows:
                yield from self._shape(raw, left, width, sheet)
        except (etree.XMLSyntaxError, zipfile.BadZipFile, OSError, EOFError, NotImplementedError,
                ValueError, KeyError) as exc:
            raise InputError(f"cannot read the {self.kind} file: {_reason(exc)}", file=self.file) from None

    def _shape(self, raw: RawRow, left: int, width: int, sheet: str) -> Iterator[SourceRow]:
        number, values, _ = raw
        if left:
            values = values[left:]
        if not "".join(values).strip():
            return
        n = len(values)
        if n > width:
            if "".join(values[width:]).strip():
                values.extend([""] * (self._scan()[1] - left + 1 - n))  # calamine: the used rectangle's width
            else:
                del values[width:]
        elif n < width:
            values.extend([""] * (width - n))
        yield SourceRow(number, values, sheet)

    def close(self) -> None:
        """Release the zip file."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> StreamSheetReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (ValueError, KeyError)) and not isinstance(exc, etree.XMLSyntaxError):
        return f"damaged content ({type(exc).__name__})"  # their text may quote a cell: no client data in errors
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
