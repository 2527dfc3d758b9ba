"""XLSX, XLS and ODS through python-calamine: every cell reaches the mapper as text, like a CSV cell.

Numbers become their decimal text in the mapping's decimal notation (no float artefacts: to the
15 significant digits spreadsheets work to, so a cell Excel shows as 0.3 is "0,3", also when it
holds the 0.30000000000000004 a formula computed),
whole numbers lose the ".0", dates become ISO ``YYYY-MM-DD`` (a time of day is kept only when
it is not midnight), and plain numbers in a column the mapping reads as a date are taken as
spreadsheet date serials. calamine reads one sheet's cells into compact Rust memory; the rows
are converted to text one at a time.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

import python_calamine as calamine

from gateway.errors import InputError
from gateway.readers.base import SourceRow
from gateway.readers.xls_datemode import xls_is_1904

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec
    from gateway.readers.xls_notes import RowNotes

_EPOCH = date(1899, 12, 30)  # day 0 of the 1900 date system as Excel and LibreOffice count it
MAX_SERIAL = 2_958_465       # 9999-12-31
_DATE1904 = re.compile(rb"""<(?:\w+:)?workbookPr\b[^>]*\bdate1904=["'](?:1|true)["']""")


class SpreadsheetReader:
    """Rows of one worksheet; see ``FormatSpec`` (``sheet``, ``header_row``, ``columns``)."""

    def __init__(self, path: str | os.PathLike[str], fmt: FormatSpec, *,
                 date_columns: frozenset[str] = frozenset()) -> None:
        self.file = str(path)
        self._decimal = fmt.decimal_separator
        # A plain serial counts from the workbook's epoch, as a formatted date does (calamine converts only those).
        # XLS keeps its flag in a BIFF record calamine does not show: ``xls_is_1904`` reads it.
        is_1904 = _is_1904(self.file) if fmt.type == "xlsx" else xls_is_1904(self.file) if fmt.type == "xls" else False
        self._serial_epoch = _EPOCH + timedelta(days=1462) if is_1904 else _EPOCH
        # calamine shows an XLS row hidden by a filter, a 5 % cell (0.05) and #N/A (empty) as any other: read from the
        # BIFF records first, so that their bytes are gone before calamine's memory grows (readers/xls_notes.py)
        sheet_notes: dict[str, dict[int, RowNotes]] | None = None
        if fmt.type == "xls":
            from gateway.readers.xls_notes import xls_sheet_notes  # here: it reads cells, which imports this
            sheet_notes = xls_sheet_notes(self.file)
        try:
            self._book = calamine.CalamineWorkbook.from_path(self.file)
        except Exception as exc:  # calamine raises its own and OS errors; all mean "cannot read this"
            raise InputError(f"cannot read the {fmt.type.upper()} file: {_reason(exc)}", file=self.file) from None
        try:
            self.sheet = self._pick_sheet(fmt.sheet)
            try:
                sheet = self._book.get_sheet_by_name(self.sheet)
            except Exception as exc:
                raise InputError(f"cannot read sheet '{self.sheet}': {_reason(exc)}", file=self.file) from None
            self._offset = sheet.start[1] if sheet.start else 0
            self._notes: dict[int, RowNotes] | None = sheet_notes.get(self.sheet) if sheet_notes else None
            del sheet_notes  # the other sheets' notes
            self._rows: Iterator[list[Any]] = iter(sheet.iter_rows())
            self._line = 0
            if fmt.header_row == 0:
                self.header, self.header_row = list(fmt.columns or []), 0
            else:
                self.header, self.header_row = self._read_header(fmt.header_row)
            wanted = {c.strip().casefold() for c in date_columns}
            self._dates = frozenset(i for i, h in enumerate(self.header) if h.strip().casefold() in wanted)
        except BaseException:
            self.close()
            raise

    def _pick_sheet(self, sheet: str | int | None) -> str:
        names: list[str] = list(self._book.sheet_names)
        if not names:
            raise InputError("the workbook has no sheets", file=self.file)
        if sheet is None:  # the first the user sees: hidden sheets and chart sheets are passed over
            try:
                shown = [m.name for m in self._book.sheets_metadata if m.visible == calamine.SheetVisibleEnum.Visible
                         and m.typ == calamine.SheetTypeEnum.WorkSheet]
            except Exception:  # noqa: BLE001 - no metadata: the first sheet, as before
                shown = []
            return shown[0] if shown else names[0]
        if isinstance(sheet, int):
            if sheet > len(names):
                raise InputError(f"the mapping reads sheet number {sheet}, but the workbook has {len(names)} "
                                 f"sheet(s): {', '.join(names)}", file=self.file)
            return names[sheet - 1]
        for name in names:
            if name == sheet or name.strip().casefold() == sheet.strip().casefold():
                return name
        raise InputError(f"the mapping reads sheet '{sheet}', but the workbook has only: "
                         f"{', '.join(repr(n) for n in names)}", file=self.file)

    def _next(self) -> list[Any] | None:
        cells = next(self._rows, None)
        if cells is not None:
            self._line += 1
        return cells

    def _read_header(self, header_row: int) -> tuple[list[str], int]:
        while (cells := self._next()) is not None:
            if self._line < header_row:
                continue
            header = [self._text(c, False).strip() for c in cells]
            if any(header):
                while header and not header[-1]:
                    header.pop()
                return header, self._line
        raise InputError(f"sheet '{self.sheet}' has no header row at or after row {header_row} "
                         "(the sheet is empty)", file=self.file)

    def __iter__(self) -> Iterator[SourceRow]:
        dates, width, sheet, text = self._dates, len(self.header), self.sheet, self._text
        while (cells := self._next()) is not None:
            values = [text(c, i in dates) for i, c in enumerate(cells)]
            if not any(v.strip() for v in values):
                continue
            if len(values) > width and not any(v.strip() for v in values[width:]):
                del values[width:]
            elif len(values) < width:
                values.extend([""] * (width - len(values)))
            # number cells of four whole digits: perhaps a postcode that lost its leading zero (SourceRow.whole4)
            whole4 = [i for i, c in enumerate(cells[:len(values)]) if c.__class__ in (int, float) and 1000 <= c <= 9999
                      and float(c).is_integer()]
            note = self._notes.get(self._line - 1) if self._notes else None
            if note is None:
                yield SourceRow(self._line, values, sheet, whole4=whole4 or None)
                continue
            at, n = self._offset, len(values)  # sheet columns -> positions in ``values``
            percent = [c - at for c in note.percent if 0 <= c - at < n]
            errors = {c - at: v for c, v in note.errors.items() if 0 <= c - at < n}
            yield SourceRow(self._line, values, sheet, whole4=whole4 or None, percent=percent or None,
                            errors=errors or None, hidden=note.hidden)

    def _text(self, cell: Any, is_date: bool) -> str:
        if isinstance(cell, str):
            return cell
        if isinstance(cell, bool):
            return "true" if cell else "false"
        if isinstance(cell, (int, float)):
            if is_date and float(cell).is_integer() and 0 < cell <= MAX_SERIAL - (self._serial_epoch - _EPOCH).days:
                return (self._serial_epoch + timedelta(days=int(cell))).isoformat()
            return number_text(cell, self._decimal)
        if isinstance(cell, datetime):
            return cell.date().isoformat() if cell.time() == time(0) else cell.isoformat(sep=" ")
        if isinstance(cell, (date, time)):
            return cell.isoformat()
        if isinstance(cell, timedelta):
            return str(cell)
        return "" if cell is None else str(cell)

    def close(self) -> None:
        book = getattr(self, "_book", None)
        if book is not None:
            book.close()

    def __enter__(self) -> SpreadsheetReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _is_1904(file: str) -> bool:
    try:
        with zipfile.ZipFile(file) as zf:
            return _DATE1904.search(zf.read("xl/workbook.xml")) is not None
    except Exception:  # noqa: BLE001 - a workbook calamine opened but this cannot: read as the 1900 system
        return False


def number_text(value: int | float, decimal: str = ".") -> str:
    """The decimal text of a stored number as the spreadsheet shows it: 0.3 -> "0.3", 12.0 -> "12", 1e-07 ->
    "0.0000001", and 0.30000000000000004 (what =0.1+0.2 saves) -> "0.3"."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    # 15 significant digits, the precision spreadsheet programs work and show numbers to: a calculated amount's
    # binary tail (=3*1.1 saves 3.3000000000000003) is no part of it ('g' drops trailing zeros, so a number
    # typed with fewer digits reads as typed: the shortest text of its double).
    text = format(Decimal(format(value, ".15g")), "f")
    return text.replace(".", decimal) if decimal != "." else text


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
