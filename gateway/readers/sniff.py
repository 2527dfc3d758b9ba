"""Looking at a file before reading it: what it really is, its text encoding, its delimiter, zip limits.

A client's file is refused early and clearly when its bytes do not fit the mapping's declared type
(an XLSX saved as ``.csv``, a PDF, a UTF-16 export) or when a spreadsheet's zip container promises
far more data than a case file can hold (a zip bomb): the declared sizes are checked before
any parser decompresses anything, and so are a sheet's rows and columns (``sheet_size``).
"""

from __future__ import annotations

import codecs
import os
import struct
import zipfile
from collections.abc import Callable
from typing import Any

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.readers.sheet_size import check_sheet_size

SAMPLE = 1 << 16
MAX_UNZIPPED = 1 << 30        # bytes all members of a spreadsheet may declare together
MAX_RATIO = 200               # declared uncompressed / compressed size of a large member
MAX_MEMBERS = 10_000
DELIMITERS = (";", ",", "\t", "|")
_NAMES = {";": "';'", ",": "','", "\t": "tab", "|": "'|'"}
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BINARY = {b"%PDF": "a PDF document", b"\x1f\x8b": "a gzip archive", b"\x89PNG": "a PNG image",
           b"\xff\xd8\xff": "a JPEG image", b"Rar!": "a RAR archive", b"7z\xbc\xaf": "a 7-zip archive",
           b"\xff\xfe": "UTF-16 text (save it as UTF-8 or Windows-1252)",
           b"\xfe\xff": "UTF-16 text (save it as UTF-8 or Windows-1252)"}
_TEXT_TYPES = ("csv", "fixed_width")
# Bytes 0x80-0x9F that Windows-1252 leaves undefined: a file with them is ISO-8859-1 (C1 controls).
_CP1252_HOLES = frozenset(b"\x81\x8d\x8f\x90\x9d")


def delimiter_name(delimiter: str) -> str:
    """How a delimiter is named in messages."""
    return _NAMES.get(delimiter, repr(delimiter))


def _what(head: bytes, file: str) -> str:
    if head.startswith(_ZIP):
        if _too_many_members(file):
            raise InputError(f"the file is a zip archive of more than {MAX_MEMBERS} parts: refused as a zip bomb",
                             file=file)
        try:
            with zipfile.ZipFile(file) as zf:
                names = set(zf.namelist())
                if "mimetype" in names:
                    with zf.open("mimetype") as member:  # its first bytes only: a bomb may hide under this name
                        if b"spreadsheet" in member.read(100):
                            return "ods"
                if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
                    return "xlsx"
        except Exception:  # noqa: BLE001 - zipfile raises NotImplementedError, ValueError, ... on damage
            return "a damaged zip archive"
        return "a zip archive"
    if head.startswith(_OLE):
        from gateway.readers.xls_datemode import ole_streams
        return "encrypted" if "EncryptedPackage" in ole_streams(file) else "xls"
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text16 = head[2:64].decode("utf-16-le" if head[0] == 0xFF else "utf-16-be", errors="ignore").lstrip()
        if text16.startswith("<"):
            return "xml"  # UTF-16 XML is fine: the XML parser reads its encoding itself
    for magic, what in _BINARY.items():
        if head.startswith(magic):
            return what
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<?xml") or text.startswith(b"<") and text[1:2].isalpha():
        return "xml"
    if b"\x00" in head:
        if _utf16_without_bom(head):
            return "UTF-16 text without a byte order mark (save it as UTF-8 or Windows-1252)"
        return "binary data"
    return "text"


# zipfile's own search for the end of the central directory (the same record it will read the members from)
_end_record: Callable[[Any], tuple[Any, ...] | None] = getattr(zipfile, "_EndRecData")
_CENTRAL = struct.Struct("<4s24xHHH12x")  # a central directory header: signature; name, extra, comment lengths
# zipfile's names for the parts of that record it returns, and the zip64 records' signature and sizes
_ECD_SIGNATURE, _ECD_SIZE, _ECD_OFFSET, _ECD_LOCATION = (getattr(zipfile, name) for name in (
    "_ECD_SIGNATURE", "_ECD_SIZE", "_ECD_OFFSET", "_ECD_LOCATION"))
_END64, _END64_SIZES = b"PK\x06\x06", 56 + 20


def _too_many_members(file: str) -> bool:
    """Whether the zip's central directory lists more than MAX_MEMBERS parts, counted without building them.

    ``zipfile.ZipFile`` makes an object of every entry the directory holds before anyone can count them: a
    200 MB upload of empty parts (2 million entries) took gigabytes of serve's memory just to be refused.
    The walk follows the directory as zipfile does (from its size, not the count the end record claims).
    """
    try:
        with open(file, "rb") as fp:
            end = _end_record(fp)
            if end is None:
                return False  # no end record: zipfile refuses it as damaged without reading any entry
            size, offset, location = end[_ECD_SIZE], end[_ECD_OFFSET], end[_ECD_LOCATION]
            start = location - size - offset
            if end[_ECD_SIGNATURE] == _END64:
                start -= _END64_SIZES
            fp.seek(max(start + offset, 0))
            walked = members = 0
            while walked < size:
                head = fp.read(_CENTRAL.size)
                if len(head) < _CENTRAL.size:
                    return False  # cut short: zipfile stops here too, and says it is damaged
                signature, name, extra, comment = _CENTRAL.unpack(head)
                if signature != b"PK\x01\x02":
                    return False
                members += 1
                if members > MAX_MEMBERS:
                    return True
                fp.seek(name + extra + comment, os.SEEK_CUR)
                walked += _CENTRAL.size + name + extra + comment
    except (OSError, ValueError, struct.error):
        return False  # zipfile then says what is wrong with it
    return False


def _utf16_without_bom(head: bytes) -> bool:
    """Latin text in UTF-16 (.NET's Encoding.Unicode, some Windows tools) has a NUL in every other byte."""
    pairs = len(head) // 2
    if pairs < 8:
        return False
    for zeros, chars in ((head[1::2], head[0::2]), (head[0::2], head[1::2])):  # little, then big endian
        if zeros[:pairs].count(0) >= pairs * 9 // 10 and chars[:pairs].count(0) == 0:
            return True
    return False


# Excel 2007+ saves a workbook with a password to open as an OLE2 file around the encrypted XLSX: it was taken for
# an XLS ("the file is an XLS (Excel 97-2003) workbook; was it saved in another format or renamed?").
ENCRYPTED = ("the workbook is protected with a password to open (encrypted), so it cannot be read: save it again "
             "without the password to open (the way to the gateway is encrypted already) and send it again")
_LABEL = {"ods": "an ODS spreadsheet", "xlsx": "an XLSX workbook", "xls": "an XLS (Excel 97-2003) workbook",
          "xml": "an XML document", "text": "plain text"}


def _head(path: str | os.PathLike[str], file: str) -> bytes:
    """The file's first 512 bytes, which tell its format; InputError when it cannot be opened."""
    try:
        with open(path, "rb") as fh:
            return fh.read(512)
    except OSError as exc:
        raise InputError(f"cannot open the file: {exc.strerror}", file=file) from None


def check_kind(path: str | os.PathLike[str], declared: str, limits: LimitsConfig | None = None) -> None:
    """InputError unless the file's leading bytes fit the declared format type (and a sheet fits ``limits``)."""
    file = str(path)
    head = _head(path, file)
    if not head:
        raise InputError("the file is empty: no header row" if declared != "xml" else "the file is empty", file=file)
    found = _what(head, file)
    if found == "encrypted":
        raise InputError(ENCRYPTED, file=file)
    if not (found == declared or (declared in _TEXT_TYPES and found == "text")):
        raise InputError(f"the mapping declares format type '{declared}', but the file is "
                         f"{_LABEL.get(found, found)}; was it saved in another format or renamed?", file=file)
    if found in ("xlsx", "ods"):
        check_zip(file)
        check_sheet_size(file, found, limits or LimitsConfig())


def resolve_type(path: str | os.PathLike[str], declared: list[str]) -> str:
    """The one of several declared format types (``type: [xls, xlsx]``) that the file's leading bytes show;
    InputError naming them all when none fits."""
    file = str(path)
    head = _head(path, file)
    if not head:
        raise InputError("the file is empty: no header row", file=file)
    found = _what(head, file)
    if found == "encrypted":
        raise InputError(ENCRYPTED, file=file)
    if found in declared:
        return found
    if found == "text":
        text = next((t for t in declared if t in _TEXT_TYPES), None)
        if text is not None:
            return text
    raise InputError(f"the mapping declares format types {', '.join(declared)}, but the file is "
                     f"{_LABEL.get(found, found)}; was it saved in another format or renamed?", file=file)


def check_zip(file: str) -> None:
    """Refuse a spreadsheet whose members declare more data than any case file has (a zip bomb)."""
    try:
        with zipfile.ZipFile(file) as zf:
            infos = zf.infolist()
    except Exception as exc:  # noqa: BLE001 - BadZipFile, OSError, NotImplementedError, ValueError, ...
        raise InputError(f"the spreadsheet's zip container is damaged ({type(exc).__name__})", file=file) from None
    if len(infos) > MAX_MEMBERS:
        raise InputError(f"the spreadsheet has {len(infos)} parts (limit {MAX_MEMBERS}): refused as a zip bomb",
                         file=file)
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise InputError(f"part '{info.filename}' unpacks from {info.compress_size} to {info.file_size} bytes "
                             f"(ratio over {MAX_RATIO}): refused as a zip bomb", file=file)
    if total > MAX_UNZIPPED:
        raise InputError(f"the spreadsheet unpacks to {total} bytes (limit {MAX_UNZIPPED}): refused as a zip bomb",
                         file=file)


def detect_encoding(path: str | os.PathLike[str]) -> str:
    """utf-8 if the whole file is valid UTF-8, else cp1252 (iso8859-1 if it uses bytes cp1252 lacks).

    A file that mixes UTF-8 umlauts with single-byte umlauts is refused: either reading would
    corrupt some names.
    """
    file = str(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    multibyte_line = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad_line = line + chunk.count(b"\n", 0, max(exc.start, 0))
                if multibyte_line or _has_utf8(chunk[:max(exc.start, 0)]):
                    where = multibyte_line or line + chunk.count(b"\n", 0, _first_utf8(chunk[:exc.start]))
                    raise InputError(f"mixed text encodings: UTF-8 characters (line {where}) and a byte "
                                     f"0x{chunk[exc.start]:02X} that is not UTF-8 (line {bad_line}); "
                                     "save the file in one encoding", file=file, row=bad_line) from None
                return _single_byte(path)
            if not multibyte_line and _has_utf8(chunk):
                multibyte_line = line + chunk.count(b"\n", 0, _first_utf8(chunk))
            line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return _single_byte(path)
    return "utf-8"


def _has_utf8(data: bytes) -> bool:
    # Called only on bytes that decoded as UTF-8: a byte from 0xC2 up starts a multi-byte character.
    return max(data, default=0) >= 0xC2


def _first_utf8(data: bytes) -> int:
    return next((i for i, b in enumerate(data) if b >= 0xC2), 0)


def _single_byte(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            if not _CP1252_HOLES.isdisjoint(chunk):
                return "iso8859-1"
    return "cp1252"


def sniff_delimiter(line: str, file: str, row: int) -> str:
    """The candidate delimiter that occurs most often outside quotes in a header line."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    if counts[best] == 0:
        raise InputError("cannot tell the delimiter: the header line has none of ';' ',' tab '|'; "
                         "set format.delimiter", file=file, row=row)
    return best


_SINGLE_BYTE = frozenset({"cp1252", "iso8859-1", "iso8859-15", "cp850", "cp437", "mac-roman"})


class Utf8Watch:
    """Catches a UTF-8 file read under a declared single-byte encoding, which decodes without an error.

    "Müller" in UTF-8 read as Windows-1252 comes out "MÃ¼ller" (and shifts every fixed-width column after it).
    The first line with a non-ASCII byte decides, once: valid UTF-8 there means the file is UTF-8 (real
    Windows-1252 text is almost never valid UTF-8: that needs pairs like "Ã¼").
    """

    def __init__(self, codec: str, declared: bool, encoding: str, file: str) -> None:
        self.active = declared and codecs.lookup(codec).name in _SINGLE_BYTE
        self.encoding, self.file = encoding, file

    def check(self, block: bytes, lineno: int) -> None:
        """``block``'s lines start at ``lineno``; InputError at the first non-ASCII line if it is UTF-8."""
        if not self.active or block.isascii():
            return
        self.active = False
        for number, line in enumerate(block.split(b"\n"), start=lineno):
            if line.isascii():
                continue
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return  # a byte UTF-8 cannot have: the declared encoding it is
            raise InputError(f"the file is UTF-8 (this line has UTF-8 characters), but the mapping declares "
                             f"encoding {self.encoding}, which would garble every umlaut; set format.encoding "
                             "to utf-8 (or auto), or save the file as the mapping says", file=self.file, row=number)
