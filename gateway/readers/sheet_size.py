"""A spreadsheet's rows and columns checked against ``limits`` before any parser sees the sheet.

A 1.5 KB XLSX with cells A1 and XFD1048576 declares a sheet of 17 billion cells; a parser that
allocates the sheet's rectangle dies on it. Here the sheet XML is scanned as a stream of bytes,
in chunks (memory stays at one chunk), for what it declares: the XLSX ``<dimension ref>``, and
every cell or row reference whose column or row has as many letters or digits as the limit (the
rest cannot exceed it, so an ordinary file costs one regex pass and no Python per cell); in an
ODS, rows and cells with content that ``number-rows-repeated`` / ``number-columns-repeated``
multiply. The scan is cheap insurance, not the protection itself: the reader still runs in a child
process under a memory limit (``isolated``).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator

from gateway.config import LimitsConfig
from gateway.errors import InputError

CHUNK = 1 << 20
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s[^>]*?\bref="(?:[A-Z]+\d+:)?([A-Z]+)(\d+)"')
_ODS_ROW = re.compile(rb'<table:table-row\b([^>]*)>')
_ODS_REPEAT = re.compile(rb'number-(rows|columns)-repeated="(\d+)"')
_ODS_CELL = re.compile(rb'<table:table-cell\b([^>]*?)(/?)>')
_ODS_CONTENT = (b"office:value-type", b"<text:")
_SPACE = b" \t\n\r\x0b\x0c"  # what \s matches in a bytes pattern
MAX_ROW_BYTES = 16 << 20  # an ODS row longer than this is left to the (limited) reader


def column_number(letters: str) -> int:
    """A1-style column letters as a 1-based number: A -> 1, Z -> 26, AA -> 27, XFD -> 16384."""
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def check_sheet_size(file: str, kind: str, limits: LimitsConfig) -> None:
    """InputError if a sheet of the XLSX/ODS file declares more rows or columns than ``limits`` allow."""
    try:
        with zipfile.ZipFile(file) as zf:
            if kind == "xlsx":
                for name in zf.namelist():
                    if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                        _check_xlsx_sheet(file, _chunks(zf, name), limits)
            elif kind == "ods" and "content.xml" in zf.namelist():
                _check_ods(file, _chunks(zf, "content.xml"), limits)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a member zipfile cannot open: damaged or an unsupported zip feature
        raise InputError(f"the spreadsheet's zip container is damaged or uses a feature that cannot be read "
                         f"({type(exc).__name__}); save it again from the spreadsheet program", file=file) from None


def _chunks(zf: zipfile.ZipFile, name: str) -> Iterator[bytes]:
    with zf.open(name) as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _too_big(file: str, rows: int, cols: int, limits: LimitsConfig, what: str) -> None:
    if cols > limits.max_columns:
        raise InputError(f"the sheet {what} column {cols} (limit limits.max_columns = {limits.max_columns}); "
                         "remove the stray cells far to the right or raise the limit", file=file)
    if rows > limits.max_rows:
        raise InputError(f"the sheet {what} row {rows} (limit limits.max_rows = {limits.max_rows}); "
                         "split the file or raise the limit", file=file)


def _check_xlsx_sheet(file: str, chunks: Iterator[bytes], limits: LimitsConfig) -> None:
    letters = len(_column_name(limits.max_columns))
    digits = len(str(limits.max_rows))
    # Only references long enough to exceed a limit match, so a normal sheet yields no match at all. The
    # whitespace before r= is checked on the match: a pattern starting with a literal is searched for far
    # faster than one starting with a character class.
    refs = re.compile(rb'r="(?:([A-Z]{%d,})(\d+)|([A-Z]*)(\d{%d,}))"' % (letters, digits))
    tail, first = b"", True
    for chunk in chunks:
        data = tail + chunk
        if first:
            first = False
            if m := _DIMENSION.search(data, 0, 1 << 16):
                _too_big(file, int(m.group(2)), column_number(m.group(1).decode()), limits, "declares")
        for m in refs.finditer(data):
            if not (m.start() and data[m.start() - 1] in _SPACE):
                continue
            col, row = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            _too_big(file, int(row), column_number(col.decode()) if col else 0, limits, "has a cell in")
        tail = data[-32:]  # a reference cut by the chunk boundary is whole in the next window


def _column_name(n: int) -> str:
    name = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        name = chr(65 + rem) + name
    return name


_ROW_END = b"</table:table-row>"


def _check_ods(file: str, chunks: Iterator[bytes], limits: LimitsConfig) -> None:
    # The part after the last whole row waits in pieces, and only a new chunk (with the few bytes before it
    # that could start a row end) is searched: joined and searched again at every chunk, a row of 15 MB cost
    # 15 copies and searches of up to 15 MB, and a 7 MB upload of such rows a minute of serve's CPU.
    rows, waiting, size, tail = 0, list[bytes](), 0, b""  # tail: the waiting bytes' last few
    keep = len(_ROW_END) - 1
    for chunk in chunks:
        end = (tail + chunk).rfind(_ROW_END)
        if end < 0:
            waiting.append(chunk)
            size += len(chunk)
            tail = (tail + chunk[:keep])[-keep:] if len(chunk) < keep else chunk[-keep:]
            if size > MAX_ROW_BYTES:
                return  # one enormous row: the child's memory limit decides
            continue
        end += len(_ROW_END) - len(tail)  # in chunk: a row end begun in the tail ends in it
        rows = _count_ods_rows(file, b"".join(waiting) + chunk[:end], rows, limits)
        rest = chunk[end:]
        waiting, size, tail = [rest], len(rest), rest[-keep:]
    _count_ods_rows(file, b"".join(waiting), rows, limits)


def _count_ods_rows(file: str, data: bytes, rows: int, limits: LimitsConfig) -> int:
    """Rows so far plus those in ``data`` (whole rows), counting repeats of rows that hold a value."""
    found = _ODS_ROW.findall(data)
    if not any(b"-repeated" in attrs for attrs in found):
        return rows + len(found)  # no repeat: one each, and nothing to check (as below)
    for m in _ODS_ROW.finditer(data):
        repeat = _ODS_REPEAT.search(m.group(1))
        if repeat is None:
            rows += 1
            continue
        body_end = data.find(b"</table:table-row>", m.end())
        body = data[m.end():body_end if body_end >= 0 else len(data)]
        if any(marker in body for marker in _ODS_CONTENT):
            rows += int(repeat.group(2))
            _check_ods_cells(file, body, limits)
        if rows > limits.max_rows:
            _too_big(file, rows, 0, limits, "repeats rows up to")
    return rows


def _check_ods_cells(file: str, body: bytes, limits: LimitsConfig) -> None:
    cols = 0
    for m in _ODS_CELL.finditer(body):
        repeat = _ODS_REPEAT.search(m.group(1))
        cols += int(repeat.group(2)) if repeat else 1
        if cols > limits.max_columns and (b"office:value-type" in m.group(1)):
            _too_big(file, 0, cols, limits, "repeats a cell up to")
