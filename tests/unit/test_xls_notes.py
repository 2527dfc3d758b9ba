"""The BIFF walk behind an XLS sheet's notes (hidden rows, percentages, error cells): positions where the table
does not start at A1, and damaged or hostile compound files, which must end the walk, not the process."""

from __future__ import annotations

import struct
from pathlib import Path

import xlwt

from gateway.mapping import parse_mapping
from gateway.readers import open_reader
from gateway.readers.xls_notes import xls_row_notes


def _book(path: Path, rows: int = 3) -> Path:
    """A table from C3 (calamine cuts a sheet to its used columns): a percent cell, an error cell, a hidden row."""
    book = xlwt.Workbook()
    sheet = book.add_sheet("Forderungen")
    pct = xlwt.easyxf(num_format_str="0%")
    for c, name in enumerate(["Ref", "Betrag", "Zins"], start=2):
        sheet.write(2, c, name)
    for n in range(rows):
        r = 3 + n
        sheet.write(r, 2, f"R{n}")
        sheet.write(r, 3, 10 + n)
        if n == 0:
            sheet.write(r, 4, 0.05, pct)
        elif n == 1:
            sheet.row(r).set_cell_error(4, 0x2A)
        else:
            sheet.write(r, 4, 7)
    sheet.row(5).hidden = True
    book.save(str(path))
    return path


def test_notes_land_on_the_cells_of_a_table_that_starts_at_c3(tmp_path: Path) -> None:
    path = _book(tmp_path / "c3.xls")
    fmt = parse_mapping("client: t\nformat:\n  type: xls\n  header_row: 3\nfields:\n  creditor_reference: Ref\n"
                        "  principal_amount: Betrag\n").format
    with open_reader(path, fmt) as reader:
        assert reader.header == ["Ref", "Betrag", "Zins"]
        rows = list(reader)
    assert [(r.row, r.values[0], r.percent, r.errors, r.hidden) for r in rows] == [
        (4, "R0", [2], None, False), (5, "R1", None, {2: "#N/A"}, False), (6, "R2", None, None, True)]


def _sector_size_and_workbook(data: bytes) -> tuple[int, int, int, int]:
    """The sector size, and the Workbook stream's first sector, size and directory entry's offset in the file."""
    shift = struct.unpack_from("<H", data, 0x1E)[0]
    size = 1 << shift
    first_dir = struct.unpack_from("<I", data, 0x30)[0]
    base = (first_dir + 1) * size
    for at in range(base, base + size, 128):
        length = struct.unpack_from("<H", data, at + 64)[0]
        if data[at:at + length - 2].decode("utf-16-le") == "Workbook":
            start, stream_size = struct.unpack_from("<II", data, at + 116)
            return size, start, stream_size, at
    raise AssertionError("no Workbook stream")


def test_a_fat_chain_in_a_circle_ends_the_walk(tmp_path: Path) -> None:
    """The Workbook stream's sector chain points back at itself and its size is given as 4 GB: the walk is
    bounded by the file's sectors (followed by the declared size alone, it would gather 8 million copies of one
    sector)."""
    path = _book(tmp_path / "loop.xls", rows=400)  # over 4 KB: the stream lives in the regular FAT
    data = bytearray(path.read_bytes())
    size, start, stream_size, entry = _sector_size_and_workbook(bytes(data))
    assert stream_size >= 4096
    fat_sector = struct.unpack_from("<I", data, 0x4C)[0]  # the first FAT sector (its DIFAT entry in the header)
    struct.pack_into("<I", data, (fat_sector + 1) * size + 4 * start, start)  # sector start -> start
    struct.pack_into("<I", data, entry + 120, 0xFFFFFFF0)
    looped = tmp_path / "looped.xls"
    looped.write_bytes(bytes(data))
    assert xls_row_notes(str(looped), "Forderungen") in (None, {})


def test_a_truncated_or_foreign_file_gives_no_notes(tmp_path: Path) -> None:
    path = _book(tmp_path / "t.xls", rows=400)
    data = path.read_bytes()
    cut = tmp_path / "cut.xls"
    cut.write_bytes(data[:len(data) // 2])
    assert xls_row_notes(str(cut), "Forderungen") is None
    other = tmp_path / "other.xls"
    other.write_bytes(b"Ref;Betrag\nR1;10\n")
    assert xls_row_notes(str(other), "Forderungen") is None
    assert xls_row_notes(str(path), "Nicht da") is None
    assert xls_row_notes(str(path), "Forderungen")  # the whole file: its notes
