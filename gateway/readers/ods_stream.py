"""ODS read as a stream of rows (lxml over ``content.xml``), worded exactly like ``SpreadsheetReader``.

Only the chosen sheet's rows are kept, one at a time. Repetition is expanded lazily and only where
it has content: LibreOffice writes the unused rest of a sheet as one row repeated a million times
and a row's unused cells as one cell repeated 16,000 times; empty repeats cost nothing. A repeated
cell with content is refused if it reaches past ``limits.max_columns``, a repeated row with content
if it reaches below ``limits.max_rows``: they are refused, never expanded.
Cell kinds as calamine reads them: text (paragraphs joined by a line break, ``text:s`` as spaces,
annotations left out), float/percentage/currency by ``office:value``, dates and date-times by
``office:date-value``, times by ``office:time-value``, booleans.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from gateway.errors import InputError
from gateway.readers.cells import PLAIN_NUMBER, duration_text, iso_text, number_cell_text
from gateway.readers.spreadsheet import number_text
from gateway.readers.sheet_stream import Events, RawRow, StreamSheetReader, column_name, drop, pick_sheet, xml_events

_T = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_O = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_X = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
TABLE, ROW, CELL, COVERED = _T + "table", _T + "table-row", _T + "table-cell", _T + "covered-table-cell"
ROWS_REPEATED, COLS_REPEATED, NAME = _T + "number-rows-repeated", _T + "number-columns-repeated", _T + "name"
VALUE_TYPE, VALUE, DATE, TIME = _O + "value-type", _O + "value", _O + "date-value", _O + "time-value"
BOOLEAN, STRING = _O + "boolean-value", _O + "string-value"
PARAGRAPH, SPACE, SPACES, ANNOTATION = _X + "p", _X + "s", _X + "c", _O + "annotation"
_NUMERIC = ("float", "percentage", "currency")


def cell_text(cell: etree._Element) -> str:
    """A text cell's content: paragraphs joined by a line break, ``text:s`` as spaces, no annotations."""
    if len(cell) == 1 and not cell.text:
        p = cell[0]
        if p.tag == PARAGRAPH and len(p) == 0 and not p.tail:
            return p.text or ""
    parts: list[str] = [cell.text] if cell.text else []
    _walk(cell, parts, [True])
    return "".join(parts)


def _walk(el: etree._Element, parts: list[str], first: list[bool]) -> None:
    for child in el:
        tag = child.tag
        if tag == PARAGRAPH:
            if not first[0]:
                parts.append("\n")
            first[0] = False
        elif tag == SPACE:
            parts.append(" " * int(child.get(SPACES) or 1))
        if tag != ANNOTATION and isinstance(tag, str):
            if child.text and tag != SPACE:
                parts.append(child.text)
            _walk(child, parts, first)
        if child.tail:
            parts.append(child.tail)


class OdsStreamReader(StreamSheetReader):
    """Rows of one table of an ODS file; see ``FormatSpec`` (``sheet``, ``header_row``, ``columns``)."""

    kind = "ODS"

    def _events(self) -> Events:
        assert self._zip is not None
        if "content.xml" not in self._zip.namelist():
            raise InputError("the ODS file has no content.xml; save it again from the spreadsheet program",
                             file=self.file)
        return xml_events(self._zip, "content.xml", self.file, events=("start", "end"), tags=(TABLE, ROW))

    def _open(self, sheet: str | int | None) -> None:
        names: list[str] = []
        self._pending: Events | None = None
        events = self._events()
        for event, el in events:
            if event == "end" or el.tag != TABLE or (name := el.get(NAME)) is None:
                if event == "end":
                    drop(el)
                continue
            names.append(name)
            if (sheet is None or sheet == len(names) or isinstance(sheet, str)
                    and (name == sheet or name.strip().casefold() == sheet.strip().casefold())):
                self.sheet, self._table, self._pending = name, len(names), events
                return
        events.close()
        pick_sheet(names, sheet, self.file)  # raises the reader family's message naming the sheets
        raise InputError("the workbook has no sheets", file=self.file)

    def _raw_rows(self, bounds_only: bool = False) -> Iterator[RawRow]:
        """(row number, texts from column A, first column) for each row that holds a cell."""
        events, self._pending = self._pending, None
        if events is None:
            events, tables = self._events(), 0
            for event, el in events:
                if event == "start" and el.tag == TABLE and el.get(NAME) is not None:
                    tables += 1
                    if tables == self._table:
                        break
                elif event == "end":
                    drop(el)
        decimal, max_cols, max_rows = self._decimal, self.limits.max_columns, self.limits.max_rows
        number, depth = 1, 0
        dated: dict[str, str] = {}  # the same dates recur in every row: worded once
        plain = PLAIN_NUMBER.fullmatch
        try:
            for event, el in events:
                if el.tag == TABLE:
                    depth += 1 if event == "start" else -1
                    if depth < 0:
                        return
                    continue
                if event == "start" or depth:
                    continue  # a row of a table inside a cell is part of that cell
                repeat = int(el.get(ROWS_REPEATED) or 1)
                dates = self.date_cols
                values: list[str] = []
                first, col = -1, 0
                for cell in el:
                    if cell.tag != CELL and cell.tag != COVERED:
                        continue
                    spans = cell.get(COLS_REPEATED)
                    span = int(spans) if spans else 1
                    kind = cell.get(VALUE_TYPE)
                    value: float | None = None
                    if kind == "string":
                        text = cell.get(STRING)
                        if text is None:
                            p = cell[0] if len(cell) == 1 and not cell.text else None
                            if p is not None and p.tag == PARAGRAPH and not len(p) and not p.tail:
                                text = p.text or ""
                            else:
                                text = cell_text(cell)
                    elif kind in _NUMERIC:
                        raw = cell.get(VALUE)
                        if raw is None:
                            text = None
                        elif span == 1 and len(raw) <= 16 and plain(raw) and not (dates and "." not in raw):
                            text = raw if decimal == "." else raw.replace(".", decimal)
                        else:
                            value = self._float(raw, col, number)
                            text = number_cell_text(value, col in dates, decimal)
                    elif kind == "date" and (raw := cell.get(DATE)) is not None:
                        text = dated.get(raw)
                        if text is None:
                            if len(dated) > 10_000:
                                dated.clear()
                            text = dated[raw] = iso_text(raw)
                    elif kind is None and not cell.attrib:
                        text = None
                    else:
                        text = _other(cell, kind, decimal)
                    if text is None:
                        col += span
                        continue
                    if col + span > max_cols:
                        raise InputError(f"cell {column_name(col)}{number} reaches column {col + span}, right of the "
                                         f"column limit: a sheet may use {max_cols} columns (limit "
                                         "limits.max_columns)", file=self.file, row=number)
                    if col > len(values):
                        values.extend([""] * (col - len(values)))
                    if span == 1:
                        values.append(text)
                    elif value is not None and dates:
                        values.extend(number_cell_text(value, c in dates, decimal) for c in range(col, col + span))
                    else:
                        values.extend([text] * span)
                    if first < 0:
                        first = col
                    col += span
                drop(el)
                if first >= 0:
                    if number + repeat - 1 > max_rows:
                        raise InputError(f"row {number} is repeated down to row {number + repeat - 1}, below the row "
                                         f"limit: a sheet may use {max_rows} rows (limit limits.max_rows)",
                                         file=self.file, row=number)
                    for k in range(1 if bounds_only else repeat):
                        yield number + k, values if k == repeat - 1 else list(values), first
                number += repeat
        finally:
            events.close()

    def _float(self, raw: str, col: int, number: int) -> float:
        try:
            return float(raw)
        except ValueError:
            raise InputError(f"cell {column_name(col)}{number} has a value that is not a number", file=self.file,
                             row=number) from None


def _other(cell: etree._Element, kind: str | None, decimal: str) -> str | None:
    """Dates, times, booleans, and cells with an unusual value type (calamine takes the first value attribute)."""
    if kind == "date":
        raw = cell.get(DATE)
        return None if raw is None else iso_text(raw)
    if kind == "time":
        raw = cell.get(TIME)
        return None if raw is None else duration_text(raw)
    if kind == "boolean":
        raw = cell.get(BOOLEAN)
        return None if raw is None else "true" if raw in ("TRUE", "true") else "false"
    for key, value in cell.items():
        raw = str(value)
        if key == VALUE:
            return number_text(float(raw), decimal)
        if key == DATE:
            return iso_text(raw)
        if key == TIME:
            return duration_text(raw)
        if key == STRING:
            return raw
        if key == BOOLEAN:
            return "true" if raw in ("TRUE", "true") else "false"
    return None

