"""ODS read as a stream of rows (lxml over ``content.xml``), worded exactly like ``SpreadsheetReader``.

Only the chosen sheet's rows are kept, one at a time. Rows in the common shapes (cells with their
attributes and one plain paragraph) are read by patterns from runs the cutter took out of the XML
(``sheet_stream.RunCutter``), a row of a shape seen before by that shape's compiled pattern; anything
else by lxml, as the same tree would read it. Repetition is expanded lazily and only where
it has content: LibreOffice writes the unused rest of a sheet as one row repeated a million times
and a row's unused cells as one cell repeated 16,000 times; empty repeats cost nothing. A repeated
cell with content is refused if it reaches past ``limits.max_columns``, a repeated row with content
if it reaches below ``limits.max_rows``: they are refused, never expanded.
Cell kinds as calamine reads them: text (paragraphs joined by a line break, ``text:s`` as spaces,
annotations left out), float/percentage/currency by ``office:value``, dates and date-times by
``office:date-value``, times by ``office:time-value``, booleans.
"""

from __future__ import annotations

import os
import re
from datetime import date
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

from lxml import etree

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.readers.cells import PLAIN_NUMBER, duration_text, iso_text, number_cell_text
from gateway.readers.spreadsheet import number_text
from gateway.readers.sheet_stream import (CutEvents, RawRow, Run, StreamSheetReader, column_name, cut_events, drop,
                                          one_element, pick_sheet)
from gateway.readers.sheet_stream import PLAN_BYTES, PLAN_CELLS

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec

_T = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_O = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_X = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
TABLE, ROW, CELL, COVERED = _T + "table", _T + "table-row", _T + "table-cell", _T + "covered-table-cell"
ROWS_REPEATED, COLS_REPEATED, NAME = _T + "number-rows-repeated", _T + "number-columns-repeated", _T + "name"
VALUE_TYPE, VALUE, DATE, TIME = _O + "value-type", _O + "value", _O + "date-value", _O + "time-value"
BOOLEAN, STRING, FORMULA = _O + "boolean-value", _O + "string-value", _T + "formula"
NULL_DATE, DATE_VALUE = _T + "null-date", _T + "date-value"
_S = "{urn:oasis:names:tc:opendocument:xmlns:style:1.0}"
TABLE_PROPERTIES, STYLE_NAME = _S + "table-properties", _S + "name"
DISPLAY, TABLE_STYLE, VISIBILITY = _T + "display", _T + "style-name", _T + "visibility"
ROW_GROUP = _T + "table-row-group"
_NULL_DATE = re.compile(r"(1[89][0-9][0-9]|20[0-9][0-9])-([0-9][0-9])-([0-9][0-9])")  # what a null date may be
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


# Plain rows and cells as LibreOffice and most writers save them: a cell's attributes (any, in any order:
# read by name after a check that they are well-formed where they stand) and at most one paragraph of
# plain text (the five named entities, no CR); anything else in a row has lxml read that row.
_W = "[ \t\r\n]*+"
_ATTRS = '((?:[ \t\r\n]++[A-Za-z_][\\w.-]*:[A-Za-z_][\\w.-]*="[^"<&]*+")*+)'
_ROW_START = re.compile(_W + "<table:table-row" + _ATTRS + _W + "(/?)>")
_ROW_END = re.compile("</table:table-row" + _W + ">")
_CELL = re.compile(_W + "(?:<table:(table-cell|covered-table-cell)" + _ATTRS + _W + "(?:/>|>(?:<text:p>("
                   "(?:[^<&\r]++|&(?:amp|lt|gt|quot|apos);)*+)</text:p>|<text:p/>)?</table:\\1>)|[^ \t\r\n])")
_ATTR = re.compile('([^ \t\r\n=]+)="([^"]*)"')
_ONE_ROW = re.compile(_W + one_element("table:table-row", ("table",)))
# What a row template leaves open: a paragraph's plain text, and number and date values.
_VARS = re.compile('(<text:p>)([^<&\r]*+)(?=</text:p>)|( office:(?:value|date-value)=")([^"<&\t\n\r]*+)(?=")')
_VAR_ATTR = re.compile(' office:(value|date-value)="[^"<&\t\n\r]*+"')
P, NUM, DAY = range(3)
_SUSPICIOUS = ("table-row", ":table ", ":table>", ":table/", "<!", "<?")  # markup a plain row never holds
# row attributes, text, body start and end, element start and end; the shape it has, if known, and its groups
PlainRow = tuple[str, str, int, int, int, int, "_Plan | None", "tuple[str, ...]"]


def _unescape(text: str) -> str:
    if "&" not in text:
        return text
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'")
            .replace("&amp;", "&"))


_INVALID = ("invalid",)


def _attributes(attrs: str, nsmap: dict[str | None, str]) -> list[tuple[str, str]] | tuple[str]:
    """A start tag's attributes as (Clark name, value) in document order; ``_INVALID`` unless lxml would read
    them exactly so (no namespace declaration, every prefix bound, no duplicate, no value lxml normalises)."""
    out: list[tuple[str, str]] = []
    for name, value in _ATTR.findall(attrs):
        prefix, _, local = name.partition(":")
        uri = nsmap.get(prefix)
        if uri is None or prefix == "xmlns" or "\t" in value or "\n" in value or "\r" in value:
            return _INVALID
        out.append((f"{{{uri}}}{local}", value))
    if len({name for name, _ in out}) != len(out):
        return _INVALID
    return out


class _Plan:
    """How to read a row shaped like one read before: ``source``, the pattern of such a row's text (that row's
    text, its paragraph texts and values left open as groups); where each open value goes (``steps``: code,
    column, group), the other cells' texts (``base``), the first column."""

    __slots__ = ("source", "pattern", "steps", "base", "first", "scope", "percent")

    def __init__(self, source: str, steps: list[tuple[int, int, int]], base: list[str], first: int,
                 scope: int, percent: list[int]) -> None:
        self.source, self.steps, self.base, self.first = source, steps, base, first
        self.percent = percent  # the columns of cells shown as a percentage (office:value-type is in the shape)
        self.pattern: re.Pattern[str] | None = None
        self.scope = scope  # the namespace scope its attributes were read in (``OdsStreamReader._scope``)


class OdsStreamReader(StreamSheetReader):
    """Rows of one table of an ODS file; see ``FormatSpec`` (``sheet``, ``header_row``, ``columns``)."""

    kind = "ODS"

    def __init__(self, path: str | os.PathLike[str], fmt: FormatSpec, *,
                 date_columns: frozenset[str] = frozenset(), limits: LimitsConfig | None = None) -> None:
        self._dated: dict[str, str] = {}  # the same dates recur in every row: worded once
        self._nsmap: dict[str | None, str] = {}
        self._cell_attrs: dict[str, list[tuple[str, str]] | tuple[str]] = {}  # as written -> as lxml reads them
        self._row_attrs: dict[str, list[tuple[str, str]] | tuple[str]] = {}
        self._plans: dict[str, _Plan] = {}  # shape pattern -> plan
        self._plan_bytes = 0  # pattern source held by the plans
        self._scope = 0  # counts the namespace scopes rows were read in
        # the plans with a compiled pattern, by their rows' count of "/>" (empty cells, mostly: rows of one
        # shape have the same), most recently used first
        self._shapes: dict[int, list[_Plan]] = {}
        # The document's null date (``table:null-date``) as days after 1899-12-30: what a plain number in a date
        # column counts from. Formatted dates are stored as ISO text and need none.
        self._shift = 0
        self._row_percent: list[int] | None = None  # the percentage cells of the row ``_cells`` read last
        # table:visibility values of a row out of sight on purpose: filtered out, or hidden by hand ("collapse"
        # outside an outline group; inside one, "collapse" is a group folded away for overview)
        self._hiding: tuple[str, ...] = ("collapse", "filter")
        super().__init__(path, fmt, date_columns=date_columns, limits=limits)

    def _events(self) -> CutEvents:
        assert self._zip is not None
        if "content.xml" not in self._zip.namelist():
            raise InputError("the ODS file has no content.xml; save it again from the spreadsheet program",
                             file=self.file)
        return cut_events(self._zip, "content.xml", self.file, events=("start", "end"),
                          tags=(TABLE, ROW, NULL_DATE, TABLE_PROPERTIES, ROW_GROUP),
                          element="table:table-row", plain=self._plain_row, forbid=("table",))

    def _open(self, sheet: str | int | None) -> None:
        names: list[str] = []
        hidden: set[str] = set()  # table styles that hide their table (table:display="false")
        self._pending: CutEvents | None = None
        events = self._events()
        for event, el in events:
            if isinstance(el, Run):
                self._check_run(el)  # rows before the sheet: lxml would refuse them if not well-formed
                continue
            if el.tag == NULL_DATE and event == "end" and not names:
                self._null_date(el.get(DATE_VALUE) or "")
            if el.tag == TABLE_PROPERTIES and event == "end" and not names and el.get(DISPLAY) == "false":
                style = el.getparent()
                if style is not None and style.get(STYLE_NAME):
                    hidden.add(str(style.get(STYLE_NAME)))
            if event == "end" or el.tag != TABLE or (name := el.get(NAME)) is None:
                if event == "end":
                    drop(el)
                continue
            names.append(name)
            if (sheet is None and el.get(TABLE_STYLE) not in hidden or sheet == len(names) or isinstance(sheet, str)
                    and (name == sheet or name.strip().casefold() == sheet.strip().casefold())):
                self.sheet, self._table, self._pending = name, len(names), events
                return
        events.close()
        if sheet is None and names:
            return self._open(1)  # every sheet hidden: the first, as a workbook without hidden sheets
        pick_sheet(names, sheet, self.file)  # raises the reader family's message naming the sheets
        raise InputError("the workbook has no sheets", file=self.file)

    def _null_date(self, value: str) -> None:
        """Take the document's null date (1899-12-30 unless the settings say otherwise; 1904-01-01 in documents
        made to match a Mac workbook), if it is a date of the two centuries a null date can sensibly be."""
        m = _NULL_DATE.fullmatch(value[:10])
        if m is not None:
            try:
                self._shift = (date(*(int(g) for g in m.groups())) - date(1899, 12, 30)).days
            except ValueError:
                pass

    def _raw_rows(self, bounds_only: bool = False) -> Iterator[RawRow]:
        """(row number, texts from column A, first column) for each row that holds a cell."""
        events, self._pending = self._pending, None
        if events is None:
            events, tables = self._events(), 0
            for event, el in events:
                if isinstance(el, Run):
                    continue
                if event == "start" and el.tag == TABLE and el.get(NAME) is not None:
                    tables += 1
                    if tables == self._table:
                        break
                elif event == "end":
                    drop(el)
        max_rows = self.limits.max_rows
        at, depth = [1], 0  # the number of the next row (a list: the run reader reads it as it goes)
        groups = 0  # outline row groups the rows are in
        if not bounds_only:  # the bounds pass (in the middle of the main one) notes nothing and changes nothing
            self._hiding = ("collapse", "filter")
        try:
            for event, el in events:
                if isinstance(el, Run):
                    if depth:
                        continue  # rows of a table inside a cell are that cell's
                    rows: Iterable[tuple[int, list[str], int]] = self._run_rows(el, at)
                elif el.tag == TABLE:
                    depth += 1 if event == "start" else -1
                    if depth < 0:
                        return
                    continue
                elif el.tag == ROW_GROUP:
                    if not depth:
                        groups += 1 if event == "start" else -1
                        if not bounds_only:
                            self._hiding = ("filter",) if groups > 0 else ("collapse", "filter")
                    continue
                elif event == "start" or depth or el.tag != ROW:
                    continue  # a row of a table inside a cell is part of that cell
                else:
                    rows = (self._element_row(el, at[0]),)
                for repeat, values, first in rows:
                    number = at[0]
                    if first >= 0:
                        if number + repeat - 1 > max_rows:
                            raise InputError(f"row {number} is repeated down to row {number + repeat - 1}, below "
                                             f"the row limit: a sheet may use {max_rows} rows (limit "
                                             "limits.max_rows)", file=self.file, row=number)
                        for k in range(1 if bounds_only else repeat):
                            yield number + k, values if k == repeat - 1 else list(values), first
                    at[0] = number + repeat
        finally:
            events.close()

    def _element_row(self, el: etree._Element, number: int) -> tuple[int, list[str], int]:
        """(repeat, texts, first column) of one row read from its lxml tree."""
        decimal, max_cols = self._decimal, self.limits.max_columns
        dated = self._dated
        plain = PLAIN_NUMBER.fullmatch
        repeat = int(el.get(ROWS_REPEATED) or 1)
        if el.get(VISIBILITY) in self._hiding:
            self.note_hidden(number, number + repeat - 1)
        dates = self.date_cols
        values: list[str] = []
        first, col = -1, 0
        unsaved: list[int] | None = None
        whole4: list[int] | None = None
        percent: list[int] | None = None  # number cells shown as a percentage
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
                    text = number_cell_text(value, col in dates, decimal, shift=self._shift)
                if raw is not None and len(raw) == 4 and span == 1 and raw.isdigit() and raw[0] != "0":
                    whole4 = [*(whole4 or ()), col]  # perhaps a postcode that lost its zero
                if kind == "percentage" and raw is not None:
                    percent = [*(percent or ()), *range(col, col + span)]
            elif kind == "date" and (raw := cell.get(DATE)) is not None:
                text = dated.get(raw)
                if text is None:
                    if len(dated) > 10_000:
                        dated.clear()
                    text = dated[raw] = iso_text(raw)
            elif kind is None and not cell.attrib:
                text = None
            else:
                text = _other(cell.get, cast(list[tuple[str, str]], cell.items()), kind, decimal)
            if text is None:
                if cell.get(FORMULA) is not None and col < max_cols:  # a formula no program calculated
                    unsaved = [*(unsaved or ()), *range(col, min(col + span, max_cols))]
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
                values.extend(number_cell_text(value, c in dates, decimal, shift=self._shift)
                              for c in range(col, col + span))
            else:
                values.extend([text] * span)
            if first < 0:
                first = col
            col += span
        drop(el)
        self._note_cells(number, repeat, unsaved=unsaved, whole4=whole4, percent=percent)
        return repeat, values, first

    def _note_cells(self, number: int, repeat: int, **kinds: list[int] | None) -> None:
        """The row (``repeat`` rows from ``number``) has cells of these kinds (``note``) in the columns given."""
        for kind, columns in kinds.items():
            if columns is not None:
                self.note(kind, number, number + repeat - 1, columns)

    def _plain_row(self, text: str, pos: int) -> tuple[int, PlainRow] | None:
        """A ``<table:table-row>`` at ``pos`` whose extent is certain: (end, (attributes, text, body start and
        end, element start and end, its shape's plan and groups if a known shape matches it)); None when it
        may hold markup, a table or another row. A known shape's pattern takes only plain cells, so a match
        settles the extent at once."""
        m = _ROW_START.match(text, pos)
        if m is None:
            return None
        attrs, closed = m.groups()
        if closed:
            return m.end(), (attrs, text, 0, 0, pos, m.end(), None, ())
        start = m.end()
        end = text.find("</table:table-row", start)
        if end < 0:
            return None
        close = _ROW_END.match(text, end)
        if close is None:
            return None
        shapes = self._shapes.get(text.count("/>", start, end), [])
        for plan in shapes:
            got = plan.pattern.fullmatch(text, start, end)  # type: ignore[union-attr]
            if got is not None:
                if shapes[0] is not plan:
                    shapes.remove(plan)
                    shapes.insert(0, plan)
                return close.end(), (attrs, text, start, end, pos, close.end(), plan, got.groups())
        if any(text.find(tag, start, end) >= 0 for tag in _SUSPICIOUS):
            one = _ONE_ROW.match(text, pos)  # a row or table inside, or text naming them: the full pattern decides
            if one is None or one.end() != close.end():
                return None
        return close.end(), (attrs, text, start, end, pos, close.end(), None, ())

    def _check_run(self, run: Run) -> None:
        """Raise as lxml would for a row of the run that is not well-formed (nothing is read from the rows)."""
        for item in run.items:
            if not isinstance(item, str):
                attrs, text, body_start, body_end, start, end, plan, _ = cast(PlainRow, item)
                body = text[body_start:body_end]
                if (plan is not None and plan.scope == self._scope and run.nsmap == self._nsmap
                        and _attributes(attrs, run.nsmap) is not _INVALID
                        and "]]>" not in body):
                    continue  # a shape's pattern took it: plain cells, attributes judged when the shape was made
                cells = _CELL.findall(body) if body else []
                if (_attributes(attrs, run.nsmap) is not _INVALID and "]]>" not in body
                        and len(cells) == body.count("<table:")
                        and all(_attributes(a, run.nsmap) is not _INVALID for _, a, _ in cells)):
                    continue
                item = text[start:end]
            run.parse(str(item))

    def _run_rows(self, run: Run, at: list[int]) -> Iterator[tuple[int, list[str], int]]:
        """(repeat, texts, first column) of the rows of a run cut from ``content.xml``: plain cells read by
        ``_CELL`` and their attributes by name, exactly as ``_element_row`` reads them; any other row by lxml."""
        nsmap = run.nsmap
        if nsmap != self._nsmap:  # attributes are read by their namespace: another scope, other readings
            self._nsmap, self._cell_attrs, self._row_attrs = nsmap, {}, {}
            self._plans, self._plan_bytes = {}, 0
            self._shapes.clear()
            self._scope += 1  # shapes the cutter matched before were made in the other scope
        known, row_known = self._cell_attrs, self._row_attrs
        cell_findall = _CELL.findall
        if nsmap.get("table") != _T[1:-1]:
            return  # "table:" means another namespace here: these are no rows to lxml either
        for item in run.items:
            if isinstance(item, str):
                for row in run.parse(item):
                    yield self._element_row(row, at[0])
                continue
            attrs, text, body_start, body_end, start, end, plan, groups = cast(PlainRow, item)
            row_attrs = row_known.get(attrs)
            if row_attrs is None:
                row_attrs = _attributes(attrs, nsmap)
                if len(row_known) > 1000:
                    row_known.clear()
                row_known[attrs] = row_attrs
            if (plan is not None and plan.scope == self._scope and row_attrs is not _INVALID
                    and text.find("]]>", body_start, body_end) < 0):
                # A row shaped like one read before (the same text but for its paragraph texts and values: the
                # shape's pattern matched it whole when it was cut) is read by that row's plan.
                yield self._planned(plan, row_attrs, groups, at[0])  # type: ignore[arg-type]
                continue
            body = text[body_start:body_end]
            cells = cell_findall(body) if body else []
            if row_attrs is _INVALID or "]]>" in body or len(cells) != body.count("<table:"):
                for row in run.parse(text[start:end]):
                    yield self._element_row(row, at[0])
                continue
            every: list[list[tuple[str, str]]] = []  # each cell's attributes, all judged before any is read
            for _, attrs, _ in cells:
                got = known.get(attrs)
                if got is None:
                    got = _attributes(attrs, nsmap)
                    if len(known) > 4096:
                        known.clear()
                    known[attrs] = got
                if got is _INVALID:
                    break
                every.append(got)  # type: ignore[arg-type]
            else:
                opens = (list(_VARS.finditer(body)) if len(self._plans) < 1000 and self._plan_bytes < PLAN_BYTES
                         and body.count("/>") <= PLAN_CELLS else None)
                steps: list[tuple[int, int, int]] | None = None if opens is None else []
                read = self._cells(row_attrs, cells, every, at[0], steps, len(opens or ()))  # type: ignore[arg-type]
                if opens is not None and steps is not None and (-1, -1, -1) not in steps:
                    self._remember(body, opens, steps, read)
                yield read
                continue
            for row in run.parse(text[start:end]):  # attributes lxml must judge
                yield self._element_row(row, at[0])

    def _remember(self, body: str, opens: list[re.Match[str]], steps: list[tuple[int, int, int]],
                  read: tuple[int, list[str], int]) -> None:
        """Note a plain row's shape; the second row of a shape makes its pattern, which later rows are tried
        against (the eight most recent shapes with as many "/>"). Not past 1000 shapes: a sheet whose rows all
        differ gains nothing from them."""
        out, at = [], 0
        for m in opens:
            out.append(re.escape(body[at:m.start()]))
            if m.group(1):
                out.append(re.escape(m.group(1)) + "([^<&\r]*+)")
            else:
                out.append(re.escape(m.group(3)) + '([^"<&\t\n\r]*+)')
            at = m.end()
        out.append(re.escape(body[at:]))
        source = "".join(out)
        plan = self._plans.get(source)
        if plan is None:
            self._plan_bytes += len(source)
            base = list(read[1])
            for _, col, _ in steps:
                base[col] = ""
            self._plans[source] = _Plan(source, steps, base, read[2], self._scope, self._row_percent or [])
        elif plan.pattern is None:
            plan.pattern = re.compile(source)
            bucket = self._shapes.setdefault(body.count("/>"), [])
            bucket.insert(0, plan)
            del bucket[8:]

    def _planned(self, plan: _Plan, row_attrs: list[tuple[str, str]], open_: Sequence[str],
                 number: int) -> tuple[int, list[str], int]:
        """(repeat, texts, first column) of a row read by a plan: its open values put in place."""
        decimal, dates, dated = self._decimal, self.date_cols, self._dated
        attrs = dict(row_attrs)
        repeat = int(attrs.get(ROWS_REPEATED) or 1)
        if attrs.get(VISIBILITY) in self._hiding:
            self.note_hidden(number, number + repeat - 1)
        values = plan.base.copy()
        planned4: list[int] | None = None
        for code, col, k in plan.steps:
            v = open_[k]
            if code == P:
                values[col] = v
            elif code == NUM:
                if len(v) == 4 and v.isdigit() and v[0] != "0":
                    planned4 = [*(planned4 or ()), col]
                if len(v) <= 16 and PLAIN_NUMBER.fullmatch(v) and not (dates and "." not in v):
                    values[col] = v if decimal == "." else v.replace(".", decimal)
                else:
                    values[col] = number_cell_text(self._float(v, col, number), col in dates, decimal,
                                                   shift=self._shift)
            else:
                text = dated.get(v)
                if text is None:
                    if len(dated) > 10_000:
                        dated.clear()
                    text = dated[v] = iso_text(v)
                values[col] = text
        if planned4:
            self.note("whole4", number, number + repeat - 1, planned4)
        if plan.percent:
            self.note("percent", number, number + repeat - 1, plan.percent)
        return repeat, values, plan.first

    def _cells(self, row_attrs: list[tuple[str, str]], cells: list[tuple[str, str, str]],
               every: list[list[tuple[str, str]]], number: int,
               steps: list[tuple[int, int, int]] | None = None, open_count: int = 0) -> tuple[int, list[str], int]:
        """(repeat, texts, first column) of a plain row, its cells' attributes as lxml reads them.

        ``steps`` (a list) is filled with where the row's open values go (``_VARS``), or ends with
        (-1, -1, -1) when a cell's text depends on them in a way a plan does not follow.
        """
        k = 0  # open values so far
        decimal, max_cols = self._decimal, self.limits.max_columns
        dated = self._dated
        plain = PLAIN_NUMBER.fullmatch
        of_row = dict(row_attrs)
        repeat = int(of_row.get(ROWS_REPEATED) or 1)
        if of_row.get(VISIBILITY) in self._hiding:
            self.note_hidden(number, number + repeat - 1)
        dates = self.date_cols
        values: list[str] = []
        first, col = -1, 0
        unsaved: list[int] | None = None
        whole4: list[int] | None = None
        percent: list[int] | None = None  # number cells shown as a percentage
        for (_, attrs, paragraph), got in zip(cells, every):
            cell_attrs = dict(got)
            spans = cell_attrs.get(COLS_REPEATED)
            span = int(spans) if spans else 1
            kind = cell_attrs.get(VALUE_TYPE)
            value: float | None = None
            role: tuple[int, int] | None = None  # (code, open value) when the text comes from one
            if steps is not None:
                where = {name: k + n for n, name in enumerate(_VAR_ATTR.findall(attrs))}
                k += len(where)
                if paragraph and "&" not in paragraph:
                    where["p"] = k
                    k += 1
                if kind == "string":
                    role = (P, where["p"]) if "p" in where and STRING not in cell_attrs else None
                elif kind in _NUMERIC and VALUE in cell_attrs:
                    role = (NUM, where["value"]) if "value" in where and span == 1 else None
                    if "value" in where and span != 1:
                        steps.append((-1, -1, -1))
                elif kind == "date" and DATE in cell_attrs:
                    role = (DAY, where["date-value"]) if "date-value" in where else None
                elif where and not (kind is None and not got):
                    steps.append((-1, -1, -1))  # _other may read an open value
            if kind == "string":
                text_ = cell_attrs.get(STRING)
                cell = _unescape(paragraph) if text_ is None else text_
            elif kind in _NUMERIC:
                raw = cell_attrs.get(VALUE)
                if raw is None:
                    cell = None
                elif span == 1 and len(raw) <= 16 and plain(raw) and not (dates and "." not in raw):
                    cell = raw if decimal == "." else raw.replace(".", decimal)
                else:
                    value = self._float(raw, col, number)
                    cell = number_cell_text(value, col in dates, decimal, shift=self._shift)
                if raw is not None and len(raw) == 4 and span == 1 and raw.isdigit() and raw[0] != "0":
                    whole4 = [*(whole4 or ()), col]  # perhaps a postcode that lost its zero
                if kind == "percentage" and raw is not None:
                    percent = [*(percent or ()), *range(col, col + span)]
            elif kind == "date" and (raw := cell_attrs.get(DATE)) is not None:
                cell = dated.get(raw)
                if cell is None:
                    if len(dated) > 10_000:
                        dated.clear()
                    cell = dated[raw] = iso_text(raw)
            elif kind is None and not got:
                cell = None
            else:
                cell = _other(cell_attrs.get, got, kind, decimal)
            if cell is None:
                if FORMULA in cell_attrs and col < max_cols:  # a formula no program calculated
                    unsaved = [*(unsaved or ()), *range(col, min(col + span, max_cols))]
                    if steps is not None:
                        steps.append((-1, -1, -1))  # no plan: a row of its shape would not note it
                col += span
                continue
            if col + span > max_cols:
                raise InputError(f"cell {column_name(col)}{number} reaches column {col + span}, right of the "
                                 f"column limit: a sheet may use {max_cols} columns (limit "
                                 "limits.max_columns)", file=self.file, row=number)
            if col > len(values):
                values.extend([""] * (col - len(values)))
            if span == 1:
                values.append(cell)
            elif value is not None and dates:
                values.extend(number_cell_text(value, c in dates, decimal, shift=self._shift)
                              for c in range(col, col + span))
            else:
                values.extend([cell] * span)
            if role is not None and steps is not None:
                steps.append((role[0], col, role[1]))
            if first < 0:
                first = col
            col += span
        if steps is not None and k != open_count:
            steps.append((-1, -1, -1))  # the open values were not all found where the plan would look
        self._row_percent = percent  # for a plan made from this row
        self._note_cells(number, repeat, unsaved=unsaved, whole4=whole4, percent=percent)
        return repeat, values, first

    def _float(self, raw: str, col: int, number: int) -> float:
        try:
            return float(raw)
        except ValueError:
            raise InputError(f"cell {column_name(col)}{number} has a value that is not a number", file=self.file,
                             row=number) from None


def _other(get: Callable[[str], str | None], items: Iterable[tuple[str, str]], kind: str | None,
           decimal: str) -> str | None:
    """Dates, times, booleans, and cells with an unusual value type (calamine takes the first value attribute)."""
    if kind == "date":
        raw = get(DATE)
        return None if raw is None else iso_text(raw)
    if kind == "time":
        raw = get(TIME)
        return None if raw is None else duration_text(raw)
    if kind == "boolean":
        raw = get(BOOLEAN)
        return None if raw is None else "true" if raw in ("TRUE", "true") else "false"
    for key, value in items:
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
