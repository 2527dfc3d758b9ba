"""Whether an XLS workbook counts dates in the 1904 system (older Excel for Mac), which calamine does not tell;
and which streams an OLE2 compound file holds (an encrypted workbook is one, whatever its format).

calamine converts the cells with a date format by the workbook's flag, but a plain serial in a date column is
converted by ``SpreadsheetReader``, which must know the flag too. It is the BIFF record DATEMODE (0x0022) in
the workbook globals at the start of the ``Workbook`` (BIFF8) or ``Book`` (BIFF5) stream of the OLE2 compound
file. This reads just that: the compound file's header, its FAT (or mini FAT for a small stream), the
directory, and the first records of the stream. Every chain walk and read is bounded by the file's size, so a
damaged or hostile file ends the walk; anything unexpected means "not 1904" (calamine judges the file).

What is held is bounded by what a real compound file of that size needs, not by what its header claims: a FAT of
as many sectors as can name the file's sectors, a directory of at most ``_MAX_ENTRIES`` entries, and no chain
that comes back to a sector it passed (a circle). ``ole_streams`` runs in the gateway's own process for every
upload that starts like an OLE2 file, and there it reads the sectors it looks at, not the whole file: before, a
32 MB file whose DIFAT chain ran in a circle was held as some 450 MB of Python numbers (a 200 MB upload, several
GB).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

_SIGNATURE = bytes.fromhex("D0CF11E0A1B11AE1")
_END_OF_CHAIN = 0xFFFFFFFE
_DATEMODE, _EOF, _FILEPASS = 0x0022, 0x000A, 0x002F
_GLOBALS_BYTES = 1 << 20  # DATEMODE comes among the first records; more than this is no workbook globals
_MAX_ENTRIES = 4096  # directory entries read: a workbook has a handful (streams and storages), never thousands


class OleError(Exception):
    """The compound file is not as the format describes it."""


def xls_is_1904(path: str) -> bool:
    """True if the XLS workbook at ``path`` declares the 1904 date system; False when not, or unreadable."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        return _datemode(workbook_stream(data)) == 1
    except (OSError, OleError, struct.error, IndexError, ValueError):
        return False


def ole_streams(path: str) -> set[str]:
    """The names of the streams in the OLE2 compound file at ``path`` (empty when it cannot be followed).

    A workbook saved with a password to open is such a file whatever its format: Excel 2007+ wraps the
    encrypted XLSX in streams ``EncryptionInfo`` and ``EncryptedPackage``."""
    try:
        with open(path, "rb") as fh:
            return {name for name, kind, _, _ in _directory(_Sectors(fh.fileno()))[0] if kind == 2}
    except (OSError, OleError, struct.error, IndexError, ValueError):
        return set()


class _Sectors:
    """A file's bytes read where they are sliced (``pread``), for ``_directory``: an upload may be hundreds of MB,
    of which the directory needs a few sectors. (Not mapped: a file cut shorter meanwhile would kill the process
    with SIGBUS; a short read here is a short sector, which the walk refuses.)"""

    def __init__(self, fd: int) -> None:
        self.fd, self.size = fd, os.fstat(fd).st_size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, part: slice) -> bytes:
        start, stop, _ = part.indices(self.size)
        return os.pread(self.fd, max(0, stop - start), start)


def _directory(data: bytes | _Sectors) -> tuple[list[tuple[str, int, int, int]], _Layout]:
    """The directory entries (name, type, start sector, size) of a compound file, and how to read its streams."""
    head = data[0:512]
    if len(head) < 512 or head[:8] != _SIGNATURE:
        raise OleError
    shift, mini_shift = struct.unpack_from("<HH", head, 0x1E)
    if shift not in (9, 12) or mini_shift != 6:
        raise OleError
    size = 1 << shift
    n_fat, first_dir = struct.unpack_from("<II", head, 0x2C)
    cutoff, first_minifat, _n_minifat, first_difat, n_difat = struct.unpack_from("<IIIII", head, 0x38)
    sectors = (len(data) - size) // size + 1
    limit = sectors + 1  # no chain in the file is longer

    def sector(n: int) -> bytes:
        if n >= sectors:
            raise OleError
        return data[(n + 1) * size:(n + 2) * size]

    # A FAT sector names size / 4 sectors: more FAT sectors than it takes to name the file's own name none of them.
    # The header's count (and a DIFAT chain in a circle) may claim millions, each entry held as a Python number.
    n_fat = min(n_fat, -(-sectors // (size // 4)))
    difat = list(struct.unpack_from("<109I", head, 0x4C))
    n, walked = first_difat, 0
    while n_difat and n != _END_OF_CHAIN and walked < min(n_difat, limit) and len(difat) < n_fat:
        block = struct.unpack(f"<{size // 4}I", sector(n))
        difat += block[:-1]
        n, walked = block[-1], walked + 1
    fat_bytes = b"".join(sector(s) for s in difat[:n_fat] if s < sectors)
    fat = struct.unpack(f"<{len(fat_bytes) // 4}I", fat_bytes[:len(fat_bytes) // 4 * 4])

    def chain(start: int, table: tuple[int, ...], most: int) -> list[int]:
        out: list[int] = []
        seen: set[int] = set()
        while start != _END_OF_CHAIN and len(out) < most:
            if start >= len(table) or start in seen:  # past the table, or a circle: no compound file has one
                raise OleError
            seen.add(start)
            out.append(start)
            start = table[start]
        return out

    directory = b"".join(sector(s) for s in chain(first_dir, fat, min(limit, -(-_MAX_ENTRIES * 128 // size))))
    entries: list[tuple[str, int, int, int]] = []
    for at in range(0, len(directory) - 127, 128):
        entry = directory[at:at + 128]
        length, kind = struct.unpack_from("<HB", entry, 64)
        name = entry[:max(0, min(length, 64) - 2)].decode("utf-16-le", "replace")
        start, stream_size = struct.unpack_from("<IQ", entry, 116)
        if size == 512:
            stream_size &= 0xFFFFFFFF  # version 3 files: the high half may hold junk
        entries.append((name, kind, start, stream_size))
    return entries, _Layout(size, sector, chain, fat, limit, cutoff, first_minifat)


class _Layout:
    """What reading a stream of a compound file needs: its sectors, chains and the mini stream's place."""

    def __init__(self, size: int, sector: Callable[[int], bytes],
                 chain: Callable[[int, tuple[int, ...], int], list[int]], fat: tuple[int, ...], limit: int,
                 cutoff: int, first_minifat: int) -> None:
        self.size, self.sector, self.chain, self.fat, self.limit = size, sector, chain, fat, limit
        self.cutoff, self.first_minifat = cutoff, first_minifat


def workbook_stream(data: bytes, whole: bool = False) -> bytes:
    """The ``Workbook`` (BIFF8) or ``Book`` (BIFF5) stream: its first MB (the workbook globals) or, ``whole``, all."""
    entries, layout = _directory(data)
    size, sector, chain, fat, limit = layout.size, layout.sector, layout.chain, layout.fat, layout.limit
    cutoff, first_minifat = layout.cutoff, layout.first_minifat
    root: tuple[int, int] | None = None
    book: tuple[int, int] | None = None
    for name, kind, start, stream_size in entries:
        if kind == 5:
            root = (start, stream_size)
        elif kind == 2 and name in ("Workbook", "Book") and (book is None or name == "Workbook"):
            book = (start, stream_size)
    if book is None:
        raise OleError
    start, length = book
    want = length if whole else min(length, _GLOBALS_BYTES)
    if length >= cutoff:
        # bounded by the file's sectors too: a FAT chain in a circle must not grow until memory runs out
        return b"".join(sector(s) for s in chain(start, fat, min(want // size + 1, limit)))[:want]
    if root is None:
        raise OleError
    container = b"".join(sector(s) for s in chain(root[0], fat, limit))
    # The mini stream holds len(container) / 64 mini sectors: a mini FAT or a chain longer than that names none
    minis = len(container) // 64
    mini_bytes = b"".join(sector(s) for s in chain(first_minifat, fat, min(limit, -(-minis * 4 // size))))
    minifat = struct.unpack(f"<{len(mini_bytes) // 4}I", mini_bytes[:len(mini_bytes) // 4 * 4])
    return b"".join(container[m * 64:(m + 1) * 64]
                    for m in chain(start, minifat, min(want // 64 + 1, minis + 1)))[:want]


def _datemode(stream: bytes) -> int:
    """The DATEMODE of the workbook globals (0 if it has none before their EOF, or they are encrypted)."""
    at = 0
    while at + 4 <= len(stream):
        kind, length = struct.unpack_from("<HH", stream, at)
        if kind == _DATEMODE and length >= 2:
            return int(struct.unpack_from("<H", stream, at + 4)[0])
        if kind in (_EOF, _FILEPASS) and at:
            return 0
        at += 4 + length
    return 0
