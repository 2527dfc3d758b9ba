"""An OLE2 compound file whose header and chains claim more than the file holds is walked within what a real
file of its size needs. ``ole_streams`` runs in the gateway's own process for every upload that starts like an
OLE2 file (``readers/sniff.py``): before, a FAT count of 2**31 with a DIFAT chain in a circle made it hold every
repeated FAT sector as Python numbers, some 14 times the file's size (a 200 MB upload: several GB in ``serve``).
The XLS notes read the whole workbook stream in the reader child, where a mini FAT in a circle gathered 64 bytes
per entry up to 16 times the file's size. Real files on disk; memory measured with tracemalloc, no timing."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

from gateway.readers.sniff import check_kind
from gateway.readers.xls_datemode import ole_streams, xls_is_1904
from gateway.readers.xls_notes import xls_row_notes

SIGNATURE = bytes.fromhex("D0CF11E0A1B11AE1")
END, FREE, FATSECT = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD
MB = 1024 * 1024


def _header(n_fat: int, first_dir: int, cutoff: int, first_minifat: int, first_difat: int, n_difat: int,
            difat: list[int]) -> bytearray:
    head = bytearray(512)
    head[:8] = SIGNATURE
    struct.pack_into("<HHH", head, 0x18, 0x3E, 3, 0xFFFE)
    struct.pack_into("<HH", head, 0x1E, 9, 6)
    struct.pack_into("<II", head, 0x2C, n_fat, first_dir)
    struct.pack_into("<IIIII", head, 0x38, cutoff, first_minifat, 1, first_difat, n_difat)
    struct.pack_into("<109I", head, 0x4C, *(difat + [FREE] * (109 - len(difat))))
    return head


def _entry(name: str, kind: int, start: int, size: int) -> bytes:
    entry = bytearray(128)
    raw = (name + "\0").encode("utf-16-le")
    entry[:len(raw)] = raw
    struct.pack_into("<HB", entry, 64, len(raw), kind)
    struct.pack_into("<IQ", entry, 116, start, size)
    return bytes(entry)


def _peak(fn: object) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = fn()  # type: ignore[operator]
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_difat_chain_in_a_circle_is_not_held_in_the_gateways_process(tmp_path: Path) -> None:
    path = tmp_path / "claims.csv"  # what a client calls it does not matter: the sniff sees an OLE2 file
    sectors = 16 * MB // 512
    body = bytearray(sectors * 512)
    struct.pack_into("<128I", body, 1 * 512, *([2] * 127 + [1]))  # a DIFAT sector naming itself next: a circle
    struct.pack_into("<128I", body, 2 * 512, *range(100_000, 100_128))  # FAT entries (large numbers)
    path.write_bytes(bytes(_header(2 ** 31 - 1, 0, 4096, END, 1, 2 ** 31 - 1, [2] * 109)) + bytes(body))
    streams, peak = _peak(lambda: ole_streams(str(path)))
    assert streams == set()
    # the FAT that can name the file's 32,768 sectors (~1.3 MB as Python numbers) and a few sectors; old code ~230 MB
    assert peak < 4 * MB, f"{peak / MB:.0f} MB held for a 16 MB file"


def test_a_mini_fat_in_a_circle_does_not_swell_the_workbook_stream(tmp_path: Path) -> None:
    """The workbook stream claims 4 GB below a cutoff of 4 GB (so it is read from the mini stream), and the mini
    FAT's chain names its own sector again and again."""
    path = tmp_path / "claims.xls"
    fat = [FATSECT, END, 2, END] + [FREE] * 124  # sector 2 (the mini FAT) is followed by itself
    directory = _entry("Root Entry", 5, 3, 512) + _entry("Workbook", 2, 0, 0xFFFFFFF0) + bytes(256)
    body = bytearray(struct.pack("<128I", *fat) + directory + bytes(512) + b"\x09\x08" + bytes(510))
    body += bytes(4 * MB - len(body))
    path.write_bytes(bytes(_header(1, 1, 0xFFFFFFFF, 2, END, 0, [0])) + bytes(body))
    notes, peak = _peak(lambda: xls_row_notes(str(path), "Sheet1"))
    assert notes is None
    assert peak < 3 * 4 * MB, f"{peak / MB:.0f} MB held for a 4 MB file"  # the file read once; old code: ~100 MB


def test_real_workbooks_are_still_followed(tmp_path: Path) -> None:
    import xlwt  # type: ignore[import-untyped]

    wb = xlwt.Workbook()
    sheet = wb.add_sheet("Forderungen")
    for row in range(2_000):  # a workbook stream over the 4 KB cutoff: read through the FAT
        sheet.write(row, 0, f"RE-{row}")
        sheet.write(row, 1, row * 1.5)
    big, small = tmp_path / "big.xls", tmp_path / "small.xls"
    wb.save(str(big))
    wb = xlwt.Workbook()
    wb.add_sheet("Forderungen").write(0, 0, "Ref")
    wb.dates_1904 = True
    wb.save(str(small))
    assert "Workbook" in ole_streams(str(big)) and "Workbook" in ole_streams(str(small))
    assert xls_is_1904(str(small)) and not xls_is_1904(str(big))
    check_kind(big, "xls")
