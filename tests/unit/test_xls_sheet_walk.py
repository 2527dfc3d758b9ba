"""The XLS notes walk each record of the workbook stream once, whatever its sheet list says.

Since 7bdc62b the notes of every sheet are read (before calamine loads the workbook), each sheet's walk running from
its BOF record to the next EOF. A hostile sheet list whose names point at BOF records nested in one sheet made one
walk per name to the same EOF: quadratic, a 230 KB file took 4.7 s of the reader child's CPU, a 2 MB one its whole
limit (limits.reader_cpu_seconds, 300 s) before the file failed. Records are counted, not timed."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from gateway.readers import xls_notes

END, FREE, FATSECT = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD


def _rec(kind: int, body: bytes) -> bytes:
    return struct.pack("<HH", kind, len(body)) + body


def _bof() -> bytes:
    return _rec(0x0809, struct.pack("<HHHHII", 0x0600, 0x0010, 0, 0, 0, 0))


def _nested_sheets(k: int) -> bytes:
    """A BIFF8 workbook stream: k sheet names, the i-th pointing at the i-th of k BOF records nested in one sheet,
    each followed by a hidden ROW record; one EOF at the end."""
    names = [f"S{i}".encode() for i in range(k)]
    globals_len = len(_bof()) + sum(4 + 8 + len(n) for n in names) + 4
    row = _rec(0x0208, struct.pack("<HHHHHHI", 1, 0, 1, 0x00FF, 0, 0, 0x20))  # grbit (+12): fDyZero, hidden
    starts, sheet, at = [], bytearray(_bof()), globals_len + len(_bof())
    for _ in range(k):
        starts.append(at)
        sheet += _bof() + row
        at += len(_bof()) + len(row)
    sheet += _rec(0x000A, b"")
    glob = bytearray(_bof())
    for start, name in zip(starts, names):
        glob += _rec(0x0085, struct.pack("<IBBBB", start, 0, 0, len(name), 0) + name)
    glob += _rec(0x000A, b"")
    return bytes(glob + sheet)


def _compound(stream: bytes) -> bytes:
    """``stream`` as the Workbook stream of an OLE2 compound file (512-byte sectors, over the 4 KB cutoff)."""
    n = -(-len(stream) // 512)
    n_fat = 1
    while n_fat * 128 < n_fat + 1 + n:
        n_fat += 1
    fat = [FATSECT] * n_fat + [END] + [n_fat + 2 + i for i in range(n - 1)] + [END]
    fat += [FREE] * (n_fat * 128 - len(fat))
    head = bytearray(512)
    head[:8] = bytes.fromhex("D0CF11E0A1B11AE1")
    struct.pack_into("<HHH", head, 0x18, 0x3E, 3, 0xFFFE)
    struct.pack_into("<HH", head, 0x1E, 9, 6)
    struct.pack_into("<II", head, 0x2C, n_fat, n_fat)
    struct.pack_into("<IIIII", head, 0x38, 4096, END, 0, END, 0)
    struct.pack_into("<109I", head, 0x4C, *(list(range(n_fat)) + [FREE] * (109 - n_fat)))

    def entry(name: str, kind: int, start: int, size: int) -> bytes:
        e = bytearray(128)
        raw = (name + "\0").encode("utf-16-le")
        e[:len(raw)] = raw
        struct.pack_into("<HB", e, 64, len(raw), kind)
        struct.pack_into("<IQ", e, 116, start, size)
        return bytes(e)
    directory = entry("Root Entry", 5, END, 0) + entry("Workbook", 2, n_fat + 1, len(stream)) + bytes(256)
    return bytes(head) + struct.pack(f"<{n_fat * 128}I", *fat) + directory + stream.ljust(n * 512, b"\0")


class _Counting:
    """``xls_notes._HEAD`` counting the record headers the sheet walks read."""

    def __init__(self) -> None:
        self.reads = 0
        self._real = struct.Struct("<HH")

    def unpack_from(self, buffer: Any, offset: int = 0) -> tuple[Any, ...]:
        self.reads += 1
        return self._real.unpack_from(buffer, offset)


def test_sheet_names_pointing_into_one_sheet_do_not_walk_it_again_and_again(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    k = 3000
    stream = _nested_sheets(k)
    path = tmp_path / "claims.xls"
    path.write_bytes(_compound(stream))
    counting = _Counting()
    monkeypatch.setattr(xls_notes, "_HEAD", counting)
    notes = xls_notes.xls_sheet_notes(str(path))
    assert notes is not None
    records = 2 * k + 2  # the sheet's own BOF and EOF, and k nested BOF and ROW records
    assert counting.reads <= records, counting.reads  # old code: ~k * k (9 million)


def test_the_notes_of_every_sheet_of_a_real_workbook(tmp_path: Path) -> None:
    import xlwt  # type: ignore[import-untyped]

    book = xlwt.Workbook()
    for title, hidden in (("Forderungen", 2), ("Bezahlt", 3), ("Info", None)):
        sheet = book.add_sheet(title)
        for row in range(5):
            sheet.write(row, 0, f"{title}-{row}")
        if hidden is not None:
            sheet.row(hidden).hidden = True
    path = tmp_path / "book.xls"
    book.save(str(path))
    notes = xls_notes.xls_sheet_notes(str(path))
    assert notes is not None
    assert {name: sorted(r for r, n in rows.items() if n.hidden) for name, rows in notes.items()} == {
        "Forderungen": [2], "Bezahlt": [3], "Info": []}
