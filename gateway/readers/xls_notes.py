"""What an XLS worksheet says about its cells beyond their values, which calamine does not tell: hidden rows,
number cells shown as a percentage and cells showing an error value (``#N/A``).

The streaming XLSX and ODS readers note these on each ``SourceRow``; XLS goes through calamine, which hands a
hidden row over as any other, a 5 % cell as 0.05 and ``#N/A`` as an empty cell. So this walks the BIFF records
itself: the workbook globals (``XF`` and ``FORMAT``: which cell styles show a percentage; ``BOUNDSHEET``: where
the sheet's records begin) and then the sheet's own (``ROW`` flags, ``NUMBER``/``RK``/``MULRK``/``FORMULA``
style indexes, ``BOOLERR`` and ``FORMULA`` error results). Only record headers are read for the other
records, so a full 65,536-row sheet costs a fraction of what calamine spends on it.

Every read is bounded by the stream's length. A file this cannot follow gives ``None`` ("not known"): calamine
judges the file, and its rows are read without notes, as before.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from gateway.readers.cells import is_percent
from gateway.readers.xls_datemode import OleError, workbook_stream

_BOF, _EOF, _FILEPASS, _BOUNDSHEET = 0x0809, 0x000A, 0x002F, 0x0085
_FORMAT8, _FORMAT5, _XF = 0x041E, 0x001E, 0x00E0
_ROW, _NUMBER, _RK, _MULRK, _BOOLERR, _FORMULA = 0x0208, 0x0203, 0x027E, 0x00BD, 0x0205, 0x0006
_BIFF8 = 0x0600
_WANTED = frozenset({_EOF, _ROW, _BOOLERR, _FORMULA})
_NUMBERS = frozenset({_NUMBER, _RK, _MULRK})
_HEAD = struct.Struct("<HH")

# The error values a BIFF cell stores by code, as Excel shows them.
_ERRORS = {0x00: "#NULL!", 0x07: "#DIV/0!", 0x0F: "#VALUE!", 0x17: "#REF!", 0x1D: "#NAME?", 0x24: "#NUM!",
           0x2A: "#N/A", 0x2B: "#GETTING_DATA"}


@dataclass
class RowNotes:
    """One sheet row's notes; columns are 0-based from column A."""

    hidden: bool = False
    percent: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)


def xls_sheet_notes(path: str) -> dict[str, dict[int, RowNotes]] | None:
    """Sheet name -> (sheet row, 0-based -> its notes, for the rows that have any); None when the file cannot be
    followed, and a sheet left out whose records cannot be. Read before calamine loads the workbook: the file's bytes
    here are freed when calamine's own memory grows, so the two never count together against the reader's limit."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        stream = workbook_stream(data, whole=True)
        del data
        percent_styles, offsets = _globals(stream)
        # A sheet's records end where the next sheet's begin: each record is walked once, whatever the sheet list
        # says (names pointing at one sheet, or at BOF records nested in it, made one walk per name to the same EOF,
        # quadratic: a 230 KB file took 4.7 s of CPU, a 2 MB one the reader's whole CPU limit)
        starts = sorted(set(offsets.values()))
        ends = dict(zip(starts, starts[1:] + [len(stream)]))
        walked: dict[int, dict[int, RowNotes] | None] = {}
        out: dict[str, dict[int, RowNotes]] = {}
        for name, start in offsets.items():
            if start not in walked:
                try:
                    walked[start] = _sheet(stream, start, percent_styles, ends[start])
                except (struct.error, IndexError):
                    walked[start] = None
            notes = walked[start]
            if notes is not None:
                out[name] = notes
        return out
    except (OSError, OleError, struct.error, IndexError, ValueError, UnicodeDecodeError):
        return None


def xls_row_notes(path: str, sheet: str) -> dict[int, RowNotes] | None:
    """One sheet's ``xls_sheet_notes``."""
    notes = xls_sheet_notes(path)
    return None if notes is None else notes.get(sheet)


def _records(stream: bytes, at: int) -> list[tuple[int, int, int]]:
    """(kind, offset of the body, length) of the records from ``at`` to the next EOF (the workbook globals: the
    sheets' many records are walked in ``_sheet`` without a list)."""
    out: list[tuple[int, int, int]] = []
    end = len(stream)
    while at + 4 <= end:
        kind, length = struct.unpack_from("<HH", stream, at)
        out.append((kind, at + 4, length))
        at += 4 + length
        if kind == _EOF:
            break
    return out


def _globals(stream: bytes) -> tuple[frozenset[int], dict[str, int]]:
    """The style (XF) indexes whose number format shows a percentage, and where each sheet's records begin (by
    name). BIFF8 is Excel 97 and later; BIFF5 (Excel 5 and 95) words its strings differently."""
    kind, length = struct.unpack_from("<HH", stream, 0)
    if kind != _BOF or length < 4:
        raise ValueError("no BOF record")
    biff8 = struct.unpack_from("<H", stream, 4)[0] == _BIFF8
    formats: dict[int, str] = {}
    styles: list[int] = []  # XF index -> number format id
    offsets: dict[str, int] = {}
    for kind, body, length in _records(stream, 0)[1:]:
        if kind == _FILEPASS:  # encrypted: calamine refuses it; nothing here can be read either
            raise ValueError("encrypted workbook")
        if kind == _XF and length >= 4:
            styles.append(struct.unpack_from("<H", stream, body + 2)[0])
        elif kind in (_FORMAT8, _FORMAT5) and length >= 3:
            fid = struct.unpack_from("<H", stream, body)[0]
            formats[fid] = _format_code(stream, body + 2, body + length, biff8)
        elif kind == _BOUNDSHEET and length >= 8:
            start = struct.unpack_from("<I", stream, body)[0]
            offsets.setdefault(_sheet_name(stream, body + 6, body + length, biff8), start)
    percent = frozenset(i for i, fid in enumerate(styles) if is_percent(str(fid), formats.get(fid)))
    return percent, offsets


def _format_code(stream: bytes, at: int, end: int, biff8: bool) -> str:
    if not biff8:
        n = stream[at]
        return stream[at + 1:min(at + 1 + n, end)].decode("latin-1")
    n, flags = struct.unpack_from("<HB", stream, at)
    at += 3
    if flags & 0x08:  # rich text: a run count before the characters
        at += 2
    if flags & 0x04:  # extended (phonetic) data size
        at += 4
    if flags & 0x01:
        return stream[at:min(at + 2 * n, end)].decode("utf-16-le", "replace")
    return stream[at:min(at + n, end)].decode("latin-1")


def _sheet_name(stream: bytes, at: int, end: int, biff8: bool) -> str:
    n = stream[at]
    if not biff8:
        return stream[at + 1:min(at + 1 + n, end)].decode("cp1252", "replace")
    if stream[at + 1] & 0x01:
        return stream[at + 2:min(at + 2 + 2 * n, end)].decode("utf-16-le", "replace")
    return stream[at + 2:min(at + 2 + n, end)].decode("latin-1")


def _sheet(stream: bytes, start: int, percent_styles: frozenset[int], end: int) -> dict[int, RowNotes] | None:
    """The notes of the sheet whose records begin at ``start``; None when they do not end (EOF) before ``end``."""
    kind, _ = struct.unpack_from("<HH", stream, start)
    if kind != _BOF:
        return None
    notes: dict[int, RowNotes] = {}
    unpack, head, at = struct.unpack_from, _HEAD.unpack_from, start
    cell = "<HHH"  # row, column, style: the head of every cell record
    # most records (text cells, formats) are passed over on their header alone; number cells only matter when some
    # style shows a percentage
    wanted = _WANTED | _NUMBERS if percent_styles else _WANTED
    while at + 4 <= end:
        kind, length = head(stream, at)
        body = at + 4
        at = body + length
        if kind not in wanted:
            continue
        if kind == _EOF:
            return notes
        if kind == _ROW and length >= 16:
            row, flags = unpack("<H", stream, body)[0], unpack("<H", stream, body + 12)[0]
            # fDyZero (0x20): the row is hidden; one of an outline group (level in bits 0-2) is folded away for
            # overview, not left out, as the XLSX and ODS readers read it
            if flags & 0x20 and not flags & 0x07:
                notes.setdefault(row, RowNotes()).hidden = True
        elif kind in (_NUMBER, _RK) and percent_styles and length >= 6:
            row, col, style = unpack(cell, stream, body)
            if style in percent_styles:
                notes.setdefault(row, RowNotes()).percent.append(col)
        elif kind == _MULRK and percent_styles and length >= 6:
            row, col = unpack("<HH", stream, body)
            for i in range((length - 6) // 6):
                if unpack("<H", stream, body + 4 + 6 * i)[0] in percent_styles:
                    notes.setdefault(row, RowNotes()).percent.append(col + i)
        elif kind == _BOOLERR and length >= 8:
            if stream[body + 7] == 1:  # an error, not a boolean
                row, col, _ = unpack(cell, stream, body)
                notes.setdefault(row, RowNotes()).errors[col] = _ERRORS.get(stream[body + 6], "#ERROR")
        elif kind == _FORMULA and length >= 14:
            row, col, style = unpack(cell, stream, body)
            if unpack("<H", stream, body + 12)[0] == 0xFFFF:  # not a number: a string, boolean, error or empty
                if stream[body + 6] == 2:
                    notes.setdefault(row, RowNotes()).errors[col] = _ERRORS.get(stream[body + 8], "#ERROR")
            elif style in percent_styles:
                notes.setdefault(row, RowNotes()).percent.append(col)
    return None  # the sheet's records end without their EOF: not followed to the end
