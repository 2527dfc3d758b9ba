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
a finished row (one row of millions of cells, megabytes of junk) is refused instead of built. Runs
of rows whose extent is certain from the text are cut out of the bytes before lxml sees them and read
by the readers' own patterns (``RunCutter``, below); lxml still parses everything else.
"""

from __future__ import annotations

import os
import re
import secrets
import zipfile
from collections.abc import Callable, Generator, Iterator
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from lxml import etree

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.readers.base import SourceRow

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec

CHUNK = 1 << 16
CUT = True  # False: every element through lxml (the tests compare both ways)
MAX_GAP_BYTES = 16 << 20  # XML between two finished rows; a real row is a few KB
RawRow = tuple[int, list[str], int]  # row number, texts from column A, first column holding a cell
Events = Generator[tuple[str, etree._Element], None, None]
CutEvents = Generator[tuple[str, "etree._Element | Run"], None, None]


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
    return _events(zf, member, file, events, tags, None)  # type: ignore[return-value]  # no runs without a cutter


def cut_events(zf: zipfile.ZipFile, member: str, file: str, *, events: tuple[Literal["start", "end"], ...],
               tags: tuple[str, ...], element: str, plain: Plain | None = None,
               forbid: tuple[str, ...] = ()) -> CutEvents:
    """As ``xml_events``, but runs of ``element`` elements come as ``("run", Run)`` instead of parsed trees.

    ``element`` is the qualified name as the file writes it (``"row"``, ``"table:table-row"``); ``plain``
    reads the element's common shapes (see ``RunCutter``). The runs are cut out of the bytes before lxml
    sees them and handed over where they stood in the document, with the namespaces in scope there;
    everything else is parsed by lxml as before.
    """
    return _events(zf, member, file, events, tags, RunCutter(element, plain, forbid) if CUT else None)


def _events(zf: zipfile.ZipFile, member: str, file: str, events: tuple[Literal["start", "end"], ...],
            tags: tuple[str, ...], cutter: RunCutter | None) -> CutEvents:
    if cutter is not None:
        tags = (*tags, RUN_TAG)
    parser = etree.XMLPullParser(events=events, tag=tags, resolve_entities=False, no_network=True,
                                 load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True)
    gap, first = 0, True
    with zf.open(member) as fh:
        while True:
            chunk = fh.read(CHUNK)
            if first:
                first = False
                if b"<!DOCTYPE" in chunk[:4096]:
                    raise InputError(f"part '{member}' has a DOCTYPE declaration; refused", file=file)
            if cutter is None:
                if not chunk:
                    break
                parser.feed(chunk)
            else:
                data = cutter.feed(chunk, final=not chunk)
                if data:
                    parser.feed(data)
                if not chunk:
                    break
            got = False
            for event in parser.read_events():
                got = True
                el = event[1]
                if cutter is not None and el.tag == RUN_TAG:  # type: ignore[union-attr]
                    run = cutter.take(el) if event[0] == "end" else None  # type: ignore[arg-type]
                    if run is not None:
                        yield "run", run
                    continue
                yield event  # type: ignore[misc]  # only start/end events of elements were asked for
            gap = 0 if got else gap + len(chunk)
            if gap > MAX_GAP_BYTES:
                raise InputError(f"part '{member}' has more than {MAX_GAP_BYTES >> 20} MB of XML without a "
                                 "complete row: refused", file=file)
        parser.close()
        for event in parser.read_events():
            el = event[1]
            if cutter is not None and el.tag == RUN_TAG:  # type: ignore[union-attr]
                run = cutter.take(el) if event[0] == "end" else None  # type: ignore[arg-type]
                if run is not None:
                    yield "run", run
                continue
            yield event  # type: ignore[misc]


# -- runs of plain elements, cut out of the bytes before lxml sees them
#
# lxml building an element per cell costs more than all of calamine; most rows are a handful of cell
# shapes a regular expression reads far faster. ``RunCutter`` finds runs of consecutive ``element``
# elements whose extent is certain from the bytes alone (attributes well formed, no comment, CDATA,
# processing instruction or nested element of the same name inside), replaces each run by one empty
# placeholder element of a namespace no file can know, and keeps the run's text. lxml still parses the
# whole rest of the document (prolog, sheets before and after, odd rows): it stays the judge of
# well-formedness, namespaces and structure, and the placeholder's event says where the run stood and
# which namespaces were in scope there. The reader then reads each element of the run with its own
# strict patterns, or, for any element they do not take, has lxml parse that element's text alone in the
# same namespace scope, so every element is read exactly as the tree would read it. Whenever the bytes
# are not certain (another encoding, a DOCTYPE, a comment inside an element, a prefix other than the one
# expected, invalid characters, a run over ``MAX_GAP_BYTES``) the cutter stops cutting and hands every
# byte from there on to lxml unchanged: the reader is then exactly the tree-building one.

RUN_NS = f"urn:x-gateway-run:{secrets.token_hex(8)}"  # a file cannot hold a placeholder of its own
RUN_TAG = f"{{{RUN_NS}}}run"
_RUN_PREFIX = "g" + RUN_NS[-16:]
_XML_WS = "[ \t\r\n]"
# An attribute as XML writes it; values hold no '<' (a well-formed file never has one there).
_ATTR = """[^ \t\r\n=/<>"']++""" + _XML_WS + "*+=" + _XML_WS + """*+(?:"[^"<]*+"|'[^'<]*+')"""
# Row-shape plans (xlsx_stream, ods_stream) are bounded by what they hold, not only by their number: a plan's
# pattern source grows with its row's width and its compiled program is many times that, so a wide sheet of
# many shapes could otherwise outgrow the reader's memory limit. Rows wider than PLAN_CELLS are not planned,
# and no new plan is made once the sources kept add up to PLAN_BYTES.
PLAN_CELLS = 256
PLAN_BYTES = 512 * 1024
_XML_START = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*<")  # UTF-8 (or ASCII): what the cutter can read
_ENCODING = re.compile(rb"""\A(?:\xef\xbb\xbf)?<\?xml[^>]*?\bencoding[ \t\r\n]*=[ \t\r\n]*["']([A-Za-z0-9._-]*)["']""")


# plain(text, pos): the element at pos read, as (its end, what was read), or None.
Plain = Callable[[str, int], "tuple[int, object] | None"]


class Run:
    """Consecutive elements cut out of the XML, and the namespaces in scope where they stood.

    ``items`` holds, per element, what the reader's ``plain`` made of it, or the element's text (a ``str``)
    when ``plain`` did not take it: ``parse`` has lxml read that in the same namespace scope.
    """

    __slots__ = ("items", "nsmap")

    def __init__(self, items: list[object], nsmap: dict[str | None, str]) -> None:
        self.items = items
        self.nsmap = nsmap

    def parse(self, text: str) -> list[etree._Element]:
        """The elements of ``text`` parsed by lxml as they were in the document."""
        decls = "".join(f' xmlns{":" + prefix if prefix else ""}="{_attr_escape(uri)}"'
                        for prefix, uri in self.nsmap.items())
        # A pull parser, as the whole part is read: it raises for what is not well-formed, not for the
        # errors it only notes (a repeated xml:id), as a whole-document parse would at its end.
        parser = etree.XMLPullParser(events=("end",), tag=f"{{{RUN_NS}}}w", resolve_entities=False, no_network=True,
                                     load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True)
        wrap = f"{_RUN_PREFIX}:w"
        parser.feed(f'<{wrap} xmlns:{_RUN_PREFIX}="{RUN_NS}"{decls}>{text}</{wrap}>'.encode("utf-8"))
        for _, root in parser.read_events():
            return list(root)  # type: ignore[arg-type]
        parser.close()  # raises what stopped the parser before the end (an undefined entity, say)
        raise ValueError("a row of the run does not end")  # cannot be: the cutter took it whole


def _attr_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def one_element(element: str, forbid: tuple[str, ...] = ()) -> str:
    """The pattern of one element the cutter takes: well-formed attributes, nothing inside that hides markup
    (comment, CDATA, processing instruction) and no element of the same local name inside (nor of the local
    names in ``forbid``).

    Possessive throughout: an unfinished element fails in linear time, never by backtracking.
    """
    qname = re.escape(element)
    local = "|".join(re.escape(name) for name in (element.rpartition(":")[2], *forbid))
    return ("<" + qname + "(?:" + _XML_WS + "++" + _ATTR + ")*+" + _XML_WS + "*+(?:/>|>(?:[^<]++|<(?![!?]"
            "|/?(?:[^ \t\r\n/<>:=]+:)?(?:" + local + ")[ \t\r\n/>]))*+</" + qname + _XML_WS + "*+>)")


# Bytes no XML document holds anywhere (C0 controls but tab, LF, CR; U+FFFE, U+FFFF): lxml must see them.
_NOT_XML = bytes(0 if (b < 32 and b not in (9, 10, 13)) else 1 for b in range(256))
# The same and 0xEF, the lead byte of U+F000-U+FFFF: one pass that finds nothing clears a chunk of both.
_MAYBE_NOT_XML = bytes(0 if (b < 32 and b not in (9, 10, 13)) or b == 0xEF else 1 for b in range(256))


class RunCutter:
    """Turns the bytes of one XML part into what lxml is fed: runs of ``element`` elements cut out.

    The bytes are decoded (UTF-8, the only encoding cut; a document declaring another is fed as it is)
    and scanned for markup; comments, CDATA and processing instructions outside the elements are skipped
    whole. At each ``element`` start tag the reader's ``plain(text, pos)`` is tried, which returns the
    element's end and what it read, or None; then the generic pattern (``one_element``), whose elements
    lxml reads alone. Both patterns only take an element whose extent is certain from the text. A run
    ends at anything else between elements but whitespace.
    """

    def __init__(self, element: str, plain: Plain | None = None, forbid: tuple[str, ...] = ()) -> None:
        local = re.escape(element.rpartition(":")[2])
        # Markup that needs a look: comments, CDATA, PIs (skipped whole), other declarations, and any element of
        # that local name; a '<' is markup everywhere else (text and attribute values never hold one).
        self._token = re.compile(r"<(?:!--|!\[CDATA\[|!|\?|(?:[^ \t\r\n/<>:=!?]+:)?" + local + r"(?=[ \t\r\n/>]))")
        self._one = re.compile(_XML_WS + "*+" + one_element(element, forbid)).match
        self._plain = plain
        self._start = "<" + element
        end = b"</" + element.encode()
        self._end = end
        self._end_tag = re.compile(re.escape(element.join(("</", ""))) + _XML_WS + "*>")
        self._pending = b""
        self._waiting = False  # the pending bytes are an unfinished element: look again once its end tag came
        self._first = True
        self.cutting = True
        self._runs: dict[str, list[object]] = {}
        self._count = 0

    def feed(self, chunk: bytes, final: bool = False) -> bytes:
        """What to feed lxml for the next ``chunk`` of the part (``final``: the part has ended)."""
        if not self.cutting:
            return chunk
        if self._waiting and not final:
            if self._end not in self._pending[-len(self._end):] + chunk:
                self._pending += chunk
                return self._stop(b"") if len(self._pending) > MAX_GAP_BYTES else b""
        buf, self._pending, self._waiting = self._pending + chunk, b"", False
        if self._first:
            if len(buf) < 1024 and not final:
                self._pending = buf  # enough to see the declaration
                return b""
            self._first = False
            declared = _ENCODING.match(buf)
            if not _XML_START.match(buf) or b"\x00" in buf[:4] or (
                    declared is not None and declared.group(1).lower() not in (b"utf-8", b"utf8")):
                return self._stop(buf)
        if b"\x00" in buf.translate(_MAYBE_NOT_XML) and (
                b"\x00" in buf.translate(_NOT_XML) or b"\xef\xbf\xbe" in buf or b"\xef\xbf\xbf" in buf):
            return self._stop(buf)
        limit = len(buf) if final else buf.rfind(b">") + 1  # a '>' never ends inside a UTF-8 sequence
        try:
            text = buf[:limit].decode("utf-8")
        except UnicodeDecodeError:
            return self._stop(buf)
        tail = buf[limit:]
        out: list[str] = []
        pos = done = 0  # scanned up to pos; text up to done is in out
        token, one, plain, start = self._token.search, self._one, self._plain, self._start
        while True:
            m = token(text, pos)
            if m is None:
                lt = text.rfind("<", pos)
                cut = lt if lt >= 0 and not final and text.find(">", lt) < 0 else len(text)
                out.append(text[done:cut])
                self._pending = text[cut:].encode("utf-8") + tail
                break
            at, tok = m.start(), m.group()
            close = _CLOSE.get(tok)
            if close is not None:  # skipped whole: what is inside is not markup
                end = text.find(close, m.end())
                if end < 0:
                    if final:
                        return self._stop(("".join(out) + text[done:]).encode("utf-8") + tail)
                    out.append(text[done:at])
                    self._pending = text[at:].encode("utf-8") + tail
                    break
                pos = end + len(close)
                continue
            if tok == "<!" and not final and at + 9 > len(text):
                out.append(text[done:at])  # perhaps the start of a comment or CDATA: look again with more bytes
                self._pending = text[at:].encode("utf-8") + tail
                break
            if tok != start:
                return self._stop(("".join(out) + text[done:]).encode("utf-8") + tail)
            items: list[object] = []
            p = at
            while True:
                got = plain(text, p) if plain is not None else None
                if got is not None:
                    p, item = got
                else:
                    o = one(text, p)
                    if o is None:
                        break
                    p, item = o.end(), o.group()
                items.append(item)
            if not items:
                if final or self._end_tag.search(text, at) is not None:
                    # complete but not plain: lxml reads the rest
                    return self._stop(("".join(out) + text[done:]).encode("utf-8") + tail)
                out.append(text[done:at])
                self._pending, self._waiting = text[at:].encode("utf-8") + tail, True
                break
            self._count += 1
            key = str(self._count)
            self._runs[key] = items
            out.append(text[done:at])
            out.append(f'<{_RUN_PREFIX}:run xmlns:{_RUN_PREFIX}="{RUN_NS}" n="{key}"/>')
            pos = done = p
        data = "".join(out).encode("utf-8")
        if len(self._pending) > MAX_GAP_BYTES or final and self._pending:
            return self._stop(data)
        return data

    def _stop(self, head: bytes) -> bytes:
        """Cut no more: ``head`` and every byte after it go to lxml unchanged."""
        self.cutting = False
        data, self._pending = head + self._pending, b""
        return data

    def take(self, placeholder: etree._Element) -> Run | None:
        """The run a placeholder stands for, with the namespaces in scope at its place (None: not one of ours)."""
        items = self._runs.pop(placeholder.get("n") or "", None)
        nsmap = {k: v for k, v in placeholder.nsmap.items() if v != RUN_NS}
        parent = placeholder.getparent()
        if parent is not None:
            parent.remove(placeholder)
        return None if items is None else Run(items, nsmap)


_CLOSE = {"<!--": "-->", "<![CDATA[": "]]>", "<?": "?>"}


def drop(el: etree._Element) -> None:
    """Free a finished element and the finished siblings before it."""
    el.clear()
    parent = el.getparent()
    if parent is not None:
        while el.getprevious() is not None:
            del parent[0]


def pick_sheet(names: list[str], sheet: str | int | None, file: str, hidden: frozenset[str] = frozenset()) -> str:
    """The sheet the mapping names (by name, case-insensitive, or position from 1, hidden sheets counted), as
    SpreadsheetReader picks it; none named: the first sheet not in ``hidden`` (the first the user sees)."""
    if not names:
        raise InputError("the workbook has no sheets", file=file)
    if sheet is None:
        return next((name for name in names if name not in hidden), names[0])
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
        # Per kind of note (the ``SourceRow`` field: unsaved, whole4, percent), the rows (first, last: an ODS
        # row may repeat) and columns of the latest row read with such cells; ``_shape`` puts them on the row.
        self._noted: dict[str, tuple[int, int, list[int]]] = {}
        self._errors: tuple[int, dict[int, str]] | None = None  # the row and its cells showing an error value
        self._hidden: tuple[int, int] | None = None  # the rows (first, last) of the latest hidden row read
        self._noting = True
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

    def note(self, kind: str, first: int, last: int, columns: list[int]) -> None:
        """Rows ``first``..``last`` have cells of ``kind`` in ``columns`` (0-based from A): ``unsaved``, a formula
        without a saved value; ``whole4``, a number cell of 1000-9999; ``percent``, a number shown as a percentage.
        Not noted in the bounds pass."""
        if self._noting:
            self._noted[kind] = (first, last, columns)

    def note_hidden(self, first: int, last: int) -> None:
        """Rows ``first``..``last`` are hidden in the sheet (filtered out, or hidden by hand)."""
        if self._noting:
            self._hidden = (first, last)

    def note_error(self, row: int, column: int, value: str) -> None:
        """The cell of ``row`` in ``column`` shows the error value ``value`` (``#N/A``)."""
        if self._noting:
            if self._errors is None or self._errors[0] != row:
                self._errors = (row, {})
            self._errors[1][column] = value[:16]

    def _scan(self) -> tuple[int, int]:
        """The leftmost and rightmost column any cell of the sheet uses (a second pass, only when needed)."""
        if self._bounds is None:
            left, right = 1 << 30, -1
            self._noting = False
            try:
                for _, values, first in self._raw_rows(bounds_only=True):
                    left, right = min(left, first), max(right, len(values) - 1)
            finally:
                self._noting = True
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
        done = self.header_row  # the last row read whole: the message says where the damage is
        try:
            if self._first is not None:
                raw, self._first = self._first, None
                for src in self._shape(raw, left, width, sheet):
                    yield src
                    done = src.row
            for raw in self._rows:
                for src in self._shape(raw, left, width, sheet):
                    yield src
                    done = src.row
        except (etree.XMLSyntaxError, zipfile.BadZipFile, OSError, EOFError, NotImplementedError,
                ValueError, KeyError) as exc:
            # libxml2's line and column are those of a row cut out and parsed alone, no help to find the spot
            where = f" after row {done}" if done else ""
            raise InputError(f"cannot read the {self.kind} file{where}: {_reason(exc)}", file=self.file) from None

    def _shape(self, raw: RawRow, left: int, width: int, sheet: str) -> Iterator[SourceRow]:
        number, values, _ = raw
        noted, errors, hidden = self._noted, self._errors, self._hidden
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
        if noted or errors is not None or hidden is not None:
            # Notes of rows before this one are done with (rows only go forward): dropped, so that an ordinary
            # row after them costs nothing here.
            extra: dict[str, Any] = {}
            for kind, spot in tuple(noted.items()):
                if spot[1] < number:
                    del noted[kind]
                elif (at := _at(spot, number, left, len(values))) is not None:
                    extra[kind] = at
            if hidden is not None:
                if hidden[1] < number:
                    self._hidden = None
                elif hidden[0] <= number:
                    extra["hidden"] = True
            if errors is not None:
                if errors[0] < number:
                    self._errors = None
                elif errors[0] == number:
                    shown = {c - left: v for c, v in errors[1].items() if 0 <= c - left < len(values)}
                    if shown:
                        extra["errors"] = shown
            if extra:
                yield SourceRow(number, values, sheet, **extra)
                return
        yield SourceRow(number, values, sheet)

    def close(self) -> None:
        """Release the zip file (and the parts a pass over the sheet has open)."""
        rows = getattr(self, "_rows", None)
        if rows is not None:
            rows.close()
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> StreamSheetReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _at(noted: tuple[int, int, list[int]] | None, number: int, left: int, width: int) -> list[int] | None:
    """The positions in the row's values of the columns noted for row ``number`` (None: none)."""
    if noted is None or not noted[0] <= number <= noted[1]:
        return None
    return [c - left for c in noted[2] if 0 <= c - left < width] or None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (ValueError, KeyError)) and not isinstance(exc, etree.XMLSyntaxError):
        return f"damaged content ({type(exc).__name__})"  # their text may quote a cell: no client data in errors
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
