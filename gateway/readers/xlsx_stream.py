"""XLSX read as a stream of rows (lxml over the zip members), worded exactly like ``SpreadsheetReader``.

Memory does not grow with the sheet: the sheet XML is read row by row and each row is freed
when read. Rows and shared strings in their common shapes are read by patterns from runs the cutter
took out of the XML (``sheet_stream.RunCutter``); a row of a shape seen before by that shape's compiled
pattern; anything else by lxml, as the same tree would read it. What a workbook must hold whole is kept small and bounded: the number formats (which
styles are dates), and the shared-string table, stored as one UTF-8 buffer with offsets (about a
quarter of what Python strings would take) and refused above ``MAX_SHARED_STRINGS_BYTES``.
Cells are placed by their reference (``r="AB12"``); a gap costs nothing, a cell right of
``limits.max_columns`` or below ``limits.max_rows`` is refused with its name and the limit.
Cell kinds as calamine reads them: shared and inline strings (rich text runs joined, phonetic runs
left out, untrimmed only under ``xml:space="preserve"``, ``_x000D_`` escapes decoded), numbers
(a date number format makes a date, time or duration; 1904 workbooks), booleans, errors (empty
text), formulas by their cached value.
"""

from __future__ import annotations

import os
import posixpath
import re
from array import array
from itertools import accumulate, islice
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from lxml import etree

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.readers.cells import (PLAIN_NUMBER, builtin_kind, format_kind, is_percent, iso_text, number_cell_text,
                                   serial_text)
from gateway.readers.sheet_stream import (Events, RawRow, Run, StreamSheetReader, column_index, column_name, cut_events,
                                          drop, one_element, pick_sheet, xml_events)
from gateway.readers.sheet_stream import PLAN_BYTES, PLAN_CELLS

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec

MAX_SHARED_STRINGS_BYTES = 100 << 20  # UTF-8 text of the shared-string table plus 4 bytes per string
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_ESCAPE = re.compile(r"_x00([0-9A-Fa-f]{2})_")
_REF = re.compile(r"([A-Za-z]{1,7})([0-9]{1,10})")
_OFFICE_DOCUMENT = "/officeDocument"

# The common shapes of cells and shared strings, as Excel, LibreOffice, xlsxwriter and openpyxl write them.
# Text may hold the five named entities (no character references, no CR: those go to lxml); attributes
# are taken only in this order and without duplicates, so what matches is well-formed as it stands.
_W = "[ \t\r\n]*+"
_TEXT = "(?:[^<&\r]++|&(?:amp|lt|gt|quot|apos);)"
_FORMULA = ('<f(?: t="[A-Za-z]*")?(?: aca="[a-z01]*")?(?: ref="[A-Za-z0-9:$]*")?(?: ca="[a-z01]*")?(?: si="[0-9]*")?'
            + _W + '(?:/>|>(?:[^<&]++|&(?:amp|lt|gt|quot|apos);)*+</f>)' + _W)


def _cell_pattern(group: str) -> str:
    """A ``<c>`` element; ``group`` "(" captures column letters, digits, s, t, v, the <t> tag's end, inline text."""
    return (f'<c(?: r="{group}[A-Z]{{1,3}})({"" if group == "(" else "?:"}[0-9]{{1,7}})")?'
            f'(?: s="{group}[0-9]{{1,9}})")?(?: t="{group}[A-Za-z]{{1,12}})")?' + _W +
            "(?:/>|>" + _W + f"(?:{_FORMULA})?"
            f"(?:<v>{group}{_TEXT}++)</v>|<is>{_W}<t{group}>| xml:space=\"preserve\">){group}{_TEXT}*+)</t>{_W}</is>)?"
            + _W + "</c>)")


# A cell, or else one character that is not whitespace: a row's body is plain when it holds exactly as many
# matches as "<c" (every "<" of a cell's content is markup, so any other content adds matches).
_CELL = re.compile(_W + "(?:" + _cell_pattern("(") + "|[^ \t\r\n])")
_ROW_START = re.compile(_W + '<row(?: r="([0-9]*)")?((?:[ \t\r\n]++[A-Za-z_][\\w.-]*(?::[A-Za-z_][\\w.-]*)?="[^"<&]*")*+)'
                        + _W + "(/?)>")
_ROW_END = re.compile("</row" + _W + ">")
_SI = re.compile(_W + "<si>" + _W + "<t(>| xml:space=\"preserve\">)(" + _TEXT + "*+)</t>" + _W + "</si>")
_VALUES = re.compile("<v>([^<&\r]++)</v>")  # the values a row template leaves open
_TEMPLATE_REF = re.compile('(<c r="[A-Z]{1,3})[0-9]{1,7}"')
_ONE_ROW = re.compile(_W + one_element("row"))
# A row's attribute that hides it (the row's other attributes as ``_ROW_START`` took them).
_HIDDEN = re.compile('[ \t\r\n]hidden="(?:1|true)"')
_OUTLINE = re.compile('[ \t\r\n]outlineLevel="[1-9]')  # a row of an outline group: hidden when it is collapsed
# A formula cell that ends without a value (generators that never calculate): lxml's path notes it.
_NO_VALUE = re.compile("(?:</f>|<f[ \t\r\n][^>]*/>|<f/>)" + _W + "</c>")
PlainRow = tuple[str, str, str, int, int, int, int]  # r, other attributes, text, body start/end, element start/end
SHARED, NUMBER, DATE, TYPED, SKIP = range(5)


class _Plan:
    """How to read a row shaped like one read before: ``pattern`` matches the text of such a row (that row's
    text, its row number and values left open, as ``(?P<r>...)`` and groups); per value, what it is
    (``steps``); the row's width and first column. Shared strings are decoded in one go, the rest one by
    one, then ``gather`` places them."""

    __slots__ = ("source", "pattern", "row", "values", "shared", "others", "gather", "first", "percent")

    def __init__(self, source: str, steps: list[tuple[int, int, Any]], width: int, first: int,
                 percent: list[int] | None = None) -> None:
        self.source, self.first = source, first
        self.percent = percent or []  # the columns of number cells shown as a percentage (their style says so)
        self.pattern: re.Pattern[str] | None = None
        self.row = 0
        self.values: Callable[[Sequence[str]], Sequence[str]] = lambda groups: groups
        shared = [k for k, (code, _, _) in enumerate(steps) if code == SHARED]
        self.shared = _getter(shared) if shared else None
        self.others = [(code, col, arg, k) for k, (code, col, arg) in enumerate(steps) if code not in (SHARED, SKIP)]
        # column -> place in the pool: 0 (empty), then the shared strings, then the others; in the cells' order,
        # so a later cell of the same column wins, as it does cell by cell
        pool_of = {k: n for n, k in enumerate(shared + [k for _, _, _, k in self.others], start=1)}
        slot = [0] * width
        for k, (code, col, _) in enumerate(steps):
            if code != SKIP:
                slot[col] = pool_of[k]
        get = _getter(slot) if width else None
        self.gather: Callable[[list[str]], list[str]] = lambda pool: list(get(pool)) if get is not None else []

    def compile(self) -> None:
        self.pattern = re.compile(self.source)
        self.row = self.pattern.groupindex.get("r", 0)
        if self.row:
            rest = [k for k in range(self.pattern.groups) if k != self.row - 1]
            self.values = _getter(rest) if rest else lambda groups: groups[:0]


def _shape_source(parts: list[str]) -> str:
    """The pattern of a row's shape from its text split at its values: the statics as they are, the row number
    in the cell references as one group (the same number in every reference), each value as a group."""
    out: list[str] = []
    seen = False
    for n, static in enumerate(parts[0::2]):
        if n:
            out.append("<v>([^<&\r]++)</v>")
        for i, piece in enumerate(_TEMPLATE_REF.split(static)):  # text, '<c r="A', text, ...: digits cut out
            if i % 2:
                out.append(re.escape(piece) + ('(?P=r)"' if seen else '(?P<r>[0-9]{1,7})"'))
                seen = True
            else:
                out.append(re.escape(piece))
    return "".join(out)


def _getter(indexes: list[int]) -> Callable[[Sequence[str]], tuple[str, ...]]:
    """``itemgetter`` that always gives a tuple (it gives the item itself for one index)."""
    if len(indexes) == 1:
        k = indexes[0]
        return lambda seq: (seq[k],)
    return itemgetter(*indexes)


def _plain_row(text: str, pos: int) -> tuple[int, PlainRow] | None:
    """A ``<row>`` at ``pos`` whose extent is certain: (end, (r, other attributes, text, body start and end,
    element start and end)); None when its start tag is not a plain one or its body may hide markup."""
    m = _ROW_START.match(text, pos)
    if m is None:
        return None
    r, rest, closed = m.groups()
    if closed:
        return m.end(), (r, rest, text, 0, 0, pos, m.end())
    start = m.end()
    end = text.find("</row", start)
    if end < 0:
        return None
    close = _ROW_END.match(text, end)
    if close is None or text.find("<!", start, end) >= 0 or text.find("<?", start, end) >= 0:
        return None
    if text.find("row", start, end) >= 0:  # perhaps a row inside: certain only by the full pattern
        one = _ONE_ROW.match(text, pos)
        if one is None or one.end() != close.end():
            return None
    return close.end(), (r, rest, text, start, end, pos, close.end())


_SIS = re.compile("(?:" + _SI.pattern + ")++")


def _plain_si(text: str, pos: int) -> tuple[int, tuple[str, list[str]]] | None:
    """Plain shared strings (one ``<t>`` each) from ``pos`` on: (end, ("si", their texts))."""
    m = _SIS.match(text, pos)
    if m is None:
        return None
    span = m.group()
    pairs = _SI.findall(span)
    if "]]>" in span:
        return None
    if "&" in span or "_x00" in span:
        return m.end(), ("si", [_inline_text(t, tag_end) for tag_end, t in pairs])
    return m.end(), ("si", [t.strip(" \t\r\n") if tag_end == ">" else t for tag_end, t in pairs])


# A row's other attributes as ``_ROW_START`` took them: whitespace, name, =, a double-quoted value without '"', '<' or
# '&'. Matched attribute by attribute (findall resumes after each whole one), so a long value is read once; a
# pattern for the name alone was tried from every position inside a value: quadratic in its length.
_ATTR_NAME = re.compile(r'[ \t\r\n]++([A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?)="[^"<&]*+"')


def _unescape(text: str) -> str:
    if "&" not in text:
        return text
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'")
            .replace("&amp;", "&"))


def _inline_text(text: str, tag_end: str) -> str:
    """A plain ``<t>``'s text as ``rich_text`` words it: trimmed unless preserved, ``_x00HH_`` decoded."""
    if "&" in text:
        text = _unescape(text)
    if tag_end == ">":
        text = text.strip(" \t\r\n")
    if "_x00" in text:
        text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text


def _run_strings(run: Run) -> list[str]:
    """The shared strings of a run of ``<si>`` elements: plain ones as read, the rest (rich text) by lxml."""
    out: list[str] = []
    for item in run.items:
        if isinstance(item, tuple):
            out += item[1]
        else:
            out.extend(rich_text(el) for el in run.parse(str(item)))
    return out


def _attributes_ok(attributes: str, nsmap: dict[str | None, str], checked: dict[str, bool]) -> bool:
    """Whether a row's other attributes are well-formed where they stand: no second ``r``, no namespace
    declaration, no duplicate, every prefix bound (a row failing this is left to lxml, which judges it)."""
    ok = checked.get(attributes)
    if ok is None:
        names = _ATTR_NAME.findall(attributes)
        expanded = set()
        ok = True
        for name in names:
            prefix, _, local = name.rpartition(":")
            if name == "r" or name.startswith("xmlns") or (prefix and prefix != "xml" and prefix not in nsmap):
                ok = False
                break
            expanded.add((nsmap.get(prefix, prefix) if prefix else "", local))
        ok = ok and len(expanded) == len(names)
        if len(checked) > 1000:
            checked.clear()
        checked[attributes] = ok
    return ok


class SharedStrings:
    """The workbook's shared strings in one buffer: index -> text, with a memory budget."""

    def __init__(self, budget: int) -> None:
        self._data = bytearray()
        self._ends = array("Q")
        self._budget = budget

    def append(self, text: str) -> bool:
        """Add one string; False when the table would exceed its budget."""
        self._data += text.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._data))
        return len(self._data) + 4 * len(self._ends) <= self._budget

    def extend(self, texts: list[str]) -> bool:
        """Add strings; False when the table would exceed its budget."""
        encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
        self._ends.extend(islice(accumulate(map(len, encoded), initial=len(self._data)), 1, None))
        self._data += b"".join(encoded)
        return len(self._data) + 4 * len(self._ends) <= self._budget

    def buffers(self) -> tuple[bytearray, array[int]]:
        """The UTF-8 text and the end offset of each string, for the row loop's inline lookups."""
        return self._data, self._ends

    def __len__(self) -> int:
        return len(self._ends)

    def get(self, index: int) -> str:
        """The string at ``index`` (IndexError if the table has none there)."""
        ends = self._ends
        return self._data[ends[index - 1] if index else 0:ends[index]].decode("utf-8", "surrogatepass")


def rich_text(el: etree._Element) -> str:
    """An ``<si>``/``<is>`` string: its ``<t>`` runs joined, phonetic runs left out, as calamine reads it."""
    parts: list[str] = []
    for t in el.iter("{*}t"):
        parent = t.getparent()
        if parent is not None and parent.tag.rpartition("}")[2] == "rPh":
            continue
        s = (t.text or "") if len(t) == 0 else "".join(str(x) for x in t.itertext())
        if t.get(_XML_SPACE) != "preserve":
            s = s.strip(" \t\r\n")
        if "_x00" in s:
            s = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), s)
        parts.append(s)
    return "".join(parts)


class XlsxStreamReader(StreamSheetReader):
    """Rows of one worksheet of an XLSX file; see ``FormatSpec`` (``sheet``, ``header_row``, ``columns``)."""

    kind = "XLSX"

    def __init__(self, path: str | os.PathLike[str], fmt: FormatSpec, *,
                 date_columns: frozenset[str] = frozenset(), limits: LimitsConfig | None = None,
                 max_shared_strings_bytes: int = MAX_SHARED_STRINGS_BYTES) -> None:
        self._sst_budget = max_shared_strings_bytes
        self._dated: dict[tuple[int, str], str] = {}  # the same dates recur in every row: worded once
        self._plans: dict[str, _Plan] = {}  # shape pattern -> plan
        self._plan_bytes = 0  # pattern source held by the plans
        # the plans with a compiled pattern, by their rows' number of cells ("<c "), most recently used first
        self._shapes: dict[int, list[_Plan]] = {}
        self._recent: dict[str, str] = {}  # shared-string index as written -> text
        super().__init__(path, fmt, date_columns=date_columns, limits=limits)

    def _events(self, member: str, *tags: str) -> Events:
        assert self._zip is not None
        return xml_events(self._zip, member, self.file, events=("end",), tags=tags)

    def _open(self, sheet: str | int | None) -> None:
        assert self._zip is not None
        members = set(self._zip.namelist())
        workbook = "xl/workbook.xml"
        if "_rels/.rels" in members:
            for _, rel in self._events("_rels/.rels", "{*}Relationship"):
                if (rel.get("Type") or "").endswith(_OFFICE_DOCUMENT):
                    workbook = _resolve("", rel.get("Target") or "")
        if workbook not in members:
            raise InputError("the workbook part is missing; save the file again from the spreadsheet program",
                             file=self.file)
        base = posixpath.dirname(workbook)
        rels_member = posixpath.join(base, "_rels", posixpath.basename(workbook) + ".rels")
        targets: dict[str, str] = {}
        charts: set[str] = set()  # chart sheets and other parts that are no worksheet
        if rels_member in members:
            for _, rel in self._events(rels_member, "{*}Relationship"):
                targets[rel.get("Id") or ""] = _resolve(base, rel.get("Target") or "")
                if not (rel.get("Type") or "").endswith("/worksheet"):
                    charts.add(rel.get("Id") or "")
        sheets: list[tuple[str, str | None]] = []
        hidden: set[str] = set()  # not what the user sees first: hidden, or not a worksheet
        self._1904 = False
        for _, el in self._events(workbook, "{*}sheet", "{*}workbookPr"):
            if el.tag.endswith("workbookPr"):
                self._1904 = el.get("date1904") in ("1", "true")
                continue
            rid = next((str(v) for k, v in el.attrib.items() if str(k).rpartition("}")[2] == "id"), "")
            sheets.append((el.get("name") or "", targets.get(rid)))
            if el.get("state") in ("hidden", "veryHidden") or rid in charts:
                hidden.add(el.get("name") or "")
        self.sheet = pick_sheet([name for name, _ in sheets], sheet, self.file, frozenset(hidden))
        member = next(m for name, m in sheets if name == self.sheet)
        if member is None or member not in members:
            raise InputError(f"the workbook does not say where sheet '{self.sheet}' is stored", file=self.file)
        self._member = member
        styles, strings = posixpath.join(base, "styles.xml"), posixpath.join(base, "sharedStrings.xml")
        self._percent: frozenset[str] = frozenset()  # style indexes whose number format shows a percentage
        self._kinds = self._read_styles(styles) if styles in members else {}
        self._strings = SharedStrings(self._sst_budget)
        if strings in members:
            self._read_strings(strings)

    def _read_styles(self, member: str) -> dict[str | None, int]:
        """Cell style index (as written in ``s="3"``) -> DATETIME/DURATION, for the styles that show dates."""
        custom: dict[str, str] = {}
        kinds: dict[str | None, int] = {}
        percent: set[str] = set()
        index = 0
        for _, el in self._events(member, "{*}numFmt", "{*}xf"):
            parent = el.getparent()
            where = parent.tag.rpartition("}")[2] if parent is not None else ""
            if el.tag.endswith("numFmt") and where == "numFmts":
                fid, code = el.get("numFmtId"), el.get("formatCode")
                if fid is not None and code is not None:
                    custom[fid] = code
            elif el.tag.endswith("}xf") and where == "cellXfs":
                fid = el.get("numFmtId")
                kind = 0 if fid is None else format_kind(custom[fid]) if fid in custom else builtin_kind(fid)
                if kind:
                    kinds[str(index)] = kind
                elif fid is not None and is_percent(fid, custom.get(fid)):
                    percent.add(str(index))
                index += 1
        self._percent = frozenset(percent)
        return kinds

    def _read_strings(self, member: str) -> None:
        strings = self._strings
        assert self._zip is not None
        for _, si in cut_events(self._zip, member, self.file, events=("end",), tags=("{*}si",), element="si",
                                plain=_plain_si):
            if not strings.extend(_run_strings(si) if isinstance(si, Run) else [rich_text(si)]):
                raise InputError(f"the workbook's shared strings need more than {self._sst_budget >> 20} MB "
                                 "(limit of the streaming XLSX reader); split the file", file=self.file)
            if not isinstance(si, Run):
                drop(si)

    def _raw_rows(self, bounds_only: bool = False) -> Iterator[RawRow]:
        """(row number, texts from column A, first column) for each row that holds a cell."""
        max_rows = self.limits.max_rows
        prev, last = [0], 0  # the row read last, per pass (a row without ``r`` is the one after it)
        assert self._zip is not None
        events = cut_events(self._zip, self._member, self.file, events=("end",), tags=("{*}row", "{*}sheetData"),
                            element="row", plain=_plain_row)
        try:
            for _, item in events:
                if isinstance(item, Run):
                    rows: Iterable[tuple[int, list[str], int]] = self._run_rows(item, prev)
                elif item.tag.endswith("sheetData"):
                    return  # what follows the cells (merges, print setup) is of no use here
                else:
                    rows = (self._element_row(item, prev),)
                for number, values, first in rows:
                    if first >= 0:
                        if number > max_rows:
                            raise InputError(f"cell {column_name(first)}{number} is below the row limit: a sheet "
                                             f"may use {max_rows} rows (limit limits.max_rows)", file=self.file,
                                             row=number)
                        if number <= last:
                            raise InputError(f"row {number} comes after row {last}: the sheet's rows are out of "
                                             "order", file=self.file, row=number)
                        last = number
                        yield number, values, first
        except IndexError:
            raise InputError(f"a cell in or after row {prev[0]} points to a shared string the workbook does not "
                             "have", file=self.file, row=prev[0]) from None
        finally:
            events.close()

    def _element_row(self, row: etree._Element, prev: list[int]) -> tuple[int, list[str], int]:
        """One row read from its lxml tree (rows the patterns of ``_run_rows`` do not take, other files)."""
        data, ends = self._strings.buffers()
        kinds, is_1904, decimal = self._kinds, self._1904, self._decimal
        dated = self._dated
        plain = PLAIN_NUMBER.fullmatch
        max_cols = self.limits.max_columns
        cols = column_index(max_cols)
        ns = row.tag[:-3]
        c_tag, v_tag, is_tag = ns + "c", ns + "v", ns + "is"
        r = row.get("r")
        number = int(r) if r else prev[0] + 1
        r = r or str(number)
        prev[0] = number
        if row.get("hidden") in ("1", "true") and row.get("outlineLevel") in (None, "", "0"):
            self.note_hidden(number, number)  # not a row folded away in a collapsed outline group
        dates = self.date_cols
        values: list[str] = []
        first = col = -1
        unsaved: list[int] | None = None
        whole4: list[int] | None = None  # number cells 1000-9999: perhaps a postcode that lost its zero
        percent: list[int] | None = None  # number cells shown as a percentage
        shown_as_percent = self._percent
        for c in row:
            if c.tag != c_tag:
                continue
            ref = c.get("r")
            if ref is None:
                col += 1
            else:
                letters = ref.rstrip("0123456789")
                found = cols.get(letters)
                col = found if found is not None and ref[len(letters):] == r else self._place(ref, number)
            t = c.get("t")
            text: str | None = None
            formula = False
            for child in c:
                tag = child.tag
                if tag == v_tag:
                    v = child.text
                    if t is None or t == "n":
                        if not v:
                            text = None
                        elif kinds and (kind := kinds.get(c.get("s"))):
                            text = dated.get((kind, v))
                            if text is None:
                                if len(dated) > 10_000:
                                    dated.clear()
                                text = dated[kind, v] = serial_text(self._float(v, col), kind, is_1904, decimal)
                        elif v.isascii() and v.isdigit() and len(v) < 16 and (v[0] != "0" or len(v) == 1):
                            text = number_cell_text(float(v), True, decimal, is_1904) if col in dates else v
                            if len(v) == 4:
                                whole4 = [*(whole4 or ()), col]
                        elif len(v) <= 16 and plain(v) and "." in v:
                            text = v if decimal == "." else v.replace(".", decimal)
                        else:
                            text = self._number(v, t, col in dates, col, number)
                        if shown_as_percent and c.get("s") in shown_as_percent and text is not None:
                            percent = [*(percent or ()), col]
                    elif t == "s":
                        if v:
                            i = int(v)
                            text = data[ends[i - 1] if i else 0:ends[i]].decode("utf-8", "surrogatepass")
                        else:
                            text = None
                    else:
                        text = self._typed(t, v, col, number)
                elif tag == is_tag:
                    text = rich_text(child)
                elif tag.endswith("}f"):
                    text = None
                    formula = True
            if text is None:
                if formula and col < max_cols:  # no <v>, or an empty one: never calculated
                    unsaved = [*(unsaved or ()), col]
                continue
            if col >= max_cols:
                raise InputError(f"cell {column_name(col)}{number} is right of the column limit: a sheet may "
                                 f"use {max_cols} columns (limit limits.max_columns)", file=self.file, row=number)
            n = len(values)
            if col == n:
                values.append(text)
            elif col > n:
                values.extend([""] * (col - n))
                values.append(text)
            else:
                values[col] = text
            if first < 0 or col < first:
                first = col
        drop(row)
        if unsaved is not None:
            self.note("unsaved", number, number, unsaved)
        if whole4 is not None:
            self.note("whole4", number, number, whole4)
        if percent is not None:
            self.note("percent", number, number, percent)
        return number, values, first

    def _typed(self, t: str, v: str | None, col: int, number: int) -> str | None:
        """A ``<v>`` of a cell typed other than number or shared string."""
        if t == "str":
            return v or ""
        if t == "b":
            return None if not v else "false" if v == "0" else "true"
        if t == "e":
            if not v:
                return None
            self.note_error(number, col, v)  # the mapping names it where a field reads the cell
            return ""  # calamine hands errors (#DIV/0!) over as empty
        if t == "d":
            return iso_text(v or "")
        if t in ("inlineStr", "is"):
            return None
        raise InputError(f"cell {column_name(col)}{number} has the unknown type '{t}'", file=self.file, row=number)

    def _run_rows(self, run: Run, prev: list[int]) -> Iterator[tuple[int, list[str], int]]:
        """The rows of a run cut from the sheet XML: the common cell shapes read by ``_plain_row``.

        Exactly what ``_element_row`` gives for the same row; a row with anything else (rich text, entities
        beyond the five named ones, other attributes or attribute order, empty values) is parsed by lxml.
        """
        data, ends = self._strings.buffers()
        kinds, is_1904, decimal = self._kinds, self._1904, self._decimal
        dated = self._dated
        plain = PLAIN_NUMBER.fullmatch
        max_cols = self.limits.max_columns
        cols = column_index(max_cols)
        checked: dict[str, bool] = {}
        buckets, vsplit, cell_findall = self._shapes, _VALUES.split, _CELL.findall
        recent = self._recent
        known = recent.get
        shown_as_percent = self._percent

        def shared(v: str) -> str:
            """A shared string by its index as written; the first few thousand asked for are kept decoded (the
            strings a column repeats: salutations, towns, countries)."""
            i = int(v)
            text = data[ends[i - 1] if i else 0:ends[i]].decode("utf-8", "surrogatepass")
            if len(recent) < 4096:
                recent[v] = text
            return text

        for item in run.items:
            if isinstance(item, tuple):
                r, rest, text, body_start, body_end, start, end = item
                body = text[body_start:body_end]
                if rest and not _attributes_ok(rest, run.nsmap, checked) or "]]>" in body:
                    item = text[start:end]
            if isinstance(item, str):
                for row in run.parse(item):
                    yield self._element_row(row, prev)
                continue
            number = int(r) if r else prev[0] + 1
            r = r or str(number)
            if rest and "hidden" in rest and _HIDDEN.search(rest) and not _OUTLINE.search(rest):
                self.note_hidden(number, number)
            if not body:
                prev[0] = number
                yield number, [], -1
                continue
            # A row shaped like one read before (the same text but for the row number and the values: the
            # shape's pattern matches it whole) is read by that row's plan.
            plan = None
            shapes = buckets.get(body.count("<c "), [])
            for tried in shapes:
                got = tried.pattern.fullmatch(body)  # type: ignore[union-attr]
                if got is not None and (not tried.row or got.group(tried.row) == r):
                    plan = tried
                    break
            if plan is not None:
                if shapes[0] is not plan:
                    shapes.remove(plan)
                    shapes.insert(0, plan)
                vals = plan.values(got.groups())  # type: ignore[union-attr]
                dates = self.date_cols
                try:
                    # Shared strings first, all at once; then the other cells; one gather puts them in place.
                    pool = [""]
                    planned4: list[int] = []
                    if plan.shared is not None:
                        pool += [known(v) or shared(v) for v in plan.shared(vals)]
                    for code, col, arg, k in plan.others:
                        v = vals[k]
                        if code == NUMBER:
                            if v.isascii() and v.isdigit() and len(v) < 16 and (v[0] != "0" or len(v) == 1):
                                pool.append(number_cell_text(float(v), True, decimal, is_1904) if col in dates else v)
                                if len(v) == 4:
                                    planned4.append(col)
                            elif len(v) <= 16 and plain(v) and "." in v:
                                pool.append(v if decimal == "." else v.replace(".", decimal))
                            else:
                                pool.append(self._number(v, arg, col in dates, col, number))
                        elif code == DATE:
                            cell = dated.get((arg, v))
                            if cell is None:
                                if len(dated) > 10_000:
                                    dated.clear()
                                cell = dated[arg, v] = serial_text(self._float(v, col), arg, is_1904, decimal)
                            pool.append(cell)
                        else:
                            pool.append(self._typed(arg, v, col, number))  # type: ignore[arg-type]
                    values = plan.gather(pool)
                except (InputError, ValueError, IndexError):
                    pass  # read again cell by cell below, which raises for the first cell in the row's order
                else:
                    prev[0] = number
                    if planned4:
                        self.note("whole4", number, number, planned4)
                    if plan.percent:
                        self.note("percent", number, number, plan.percent)
                    yield number, values, plan.first
                    continue
            cells = cell_findall(body)
            if len(cells) != body.count("<c") or "<f" in body and _NO_VALUE.search(body) is not None:
                for row in run.parse(text[start:end]):
                    yield self._element_row(row, prev)
                continue
            prev[0] = number
            whole4: list[int] | None = None  # number cells 1000-9999: perhaps a postcode that lost its zero
            percent: list[int] = []  # number cells shown as a percentage
            steps: list[tuple[int, int, Any]] | None = []
            dates = self.date_cols  # set once the header is read, which may be in the middle of a run
            values = []
            append = values.append
            first = col = -1
            n = 0  # len(values)
            for letters, digits, s, t, v, preserve, inline in cells:
                if letters:
                    found = cols.get(letters)
                    col = found if found is not None and digits == r else self._place(letters + digits, number)
                else:
                    col += 1
                if v:  # "&" is only undone where the text is used: int() and the plain-number tests fail on it
                    if steps is not None:
                        steps.append((SHARED, col, None) if t == "s" else
                                     (DATE, col, kinds[s]) if (not t or t == "n") and kinds and kinds.get(s) else
                                     (NUMBER, col, t or None) if not t or t == "n" else
                                     (SKIP, col, t) if t in ("inlineStr", "is") else (TYPED, col, t))
                    if t == "s":
                        i = int(v)
                        cell = data[ends[i - 1] if i else 0:ends[i]].decode("utf-8", "surrogatepass")
                    elif not t or t == "n":
                        if kinds and (kind := kinds.get(s)):
                            cell = dated.get((kind, v))
                            if cell is None:
                                if len(dated) > 10_000:
                                    dated.clear()
                                cell = dated[kind, v] = serial_text(self._float(v, col), kind, is_1904, decimal)
                        elif v.isascii() and v.isdigit() and len(v) < 16 and (v[0] != "0" or len(v) == 1):
                            cell = number_cell_text(float(v), True, decimal, is_1904) if col in dates else v
                            if len(v) == 4:
                                whole4 = [*(whole4 or ()), col]
                        elif len(v) <= 16 and plain(v) and "." in v:
                            cell = v if decimal == "." else v.replace(".", decimal)
                        else:
                            cell = self._number(_unescape(v), t or None, col in dates, col, number)
                        if s in shown_as_percent:
                            percent.append(col)
                    else:
                        cell = self._typed(t, _unescape(v), col, number)
                        if cell is None:
                            continue
                elif preserve:
                    cell = _inline_text(inline, preserve)
                    steps = None  # inline text is not left open by a template
                else:
                    continue
                if col >= max_cols:
                    raise InputError(f"cell {column_name(col)}{number} is right of the column limit: a sheet "
                                     f"may use {max_cols} columns (limit limits.max_columns)", file=self.file,
                                     row=number)
                if col == n:
                    append(cell)
                    n += 1
                    if first < 0:
                        first = col
                    continue
                if col > n:
                    values.extend([""] * (col - n))
                    append(cell)
                    n = col + 1
                else:
                    values[col] = cell
                if first < 0 or col < first:
                    first = col
            if steps is not None:
                parts = vsplit(body)
                if len(steps) == len(parts) // 2:
                    self._remember(parts, steps, len(values), first, body.count("<c "), percent)
            if whole4:
                self.note("whole4", number, number, whole4)
            if percent:
                self.note("percent", number, number, percent)
            yield number, values, first

    def _remember(self, parts: list[str], steps: list[tuple[int, int, Any]], width: int, first: int,
                  cells: int, percent: list[int]) -> None:
        """Note a plain row's shape; the second row of a shape makes its pattern, which later rows are tried
        against (the eight most recent shapes with as many cells). Not past 1000 shapes, nor for rows wider than
        ``PLAN_CELLS``, nor past ``PLAN_BYTES`` of pattern source in all."""
        if len(self._plans) >= 1000 or cells > PLAN_CELLS or self._plan_bytes >= PLAN_BYTES:
            return  # a sheet whose rows all differ gains nothing from patterns
        source = _shape_source(parts)
        plan = self._plans.get(source)
        if plan is None:
            self._plan_bytes += len(source)
            self._plans[source] = _Plan(source, steps, width, first, percent)
        elif plan.pattern is None:
            plan.compile()
            bucket = self._shapes.setdefault(cells, [])
            bucket.insert(0, plan)
            del bucket[8:]

    def _place(self, ref: str, number: int) -> int:
        """The column of a reference off the fast path (lower case, beyond the limit, or another row's)."""
        m = _REF.fullmatch(ref)
        if m is None:
            raise InputError(f"a cell in row {number} has the invalid reference '{ref[:20]}'", file=self.file,
                             row=number)
        col = 0
        for ch in m.group(1).upper():
            col = col * 26 + ord(ch) - 64
        if int(m.group(2)) != number:
            raise InputError(f"cell {ref} is written inside row {number}: the sheet's rows are out of order",
                             file=self.file, row=number)
        return col - 1

    def _float(self, v: str, col: int) -> float:
        try:
            return float(v)
        except ValueError:
            raise InputError(f"cell in column {column_name(col)} holds a number that does not parse",
                             file=self.file) from None

    def _number(self, v: str, t: str | None, is_date: bool, col: int, number: int) -> str:
        if "_" in v or v != v.strip():
            value = None  # Python's float() takes these, the spreadsheet programs do not
        else:
            try:
                value = float(v)
            except ValueError:
                value = None
        if value is None:
            if t is None:
                return v  # a cell without a type whose value is not a number is text
            raise InputError(f"cell {column_name(col)}{number} is typed as a number but holds none",
                             file=self.file, row=number)
        return number_cell_text(value, is_date, decimal=self._decimal, is_1904=self._1904)


def _resolve(base: str, target: str) -> str:
    if target.startswith("/"):
        return posixpath.normpath(target[1:])
    return posixpath.normpath(posixpath.join(base, target))
