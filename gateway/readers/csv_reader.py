"""Streaming CSV reader: declared or detected encoding and delimiter, header row; exact physical row numbers.

The file is read as bytes and decoded here (not by a text wrapper): the first lines one by one, the
rest in blocks of whole lines decoded at once. An undecodable byte is still reported with its line
and byte offset (its block is decoded line by line again, the lines before it are still read), and a
line longer than the limit fails before it is held in memory. A line without the quote character
(or a carriage return or NUL inside) is split on the delimiter directly, which is exactly what
``csv`` makes of it; every other line starts a record ``csv`` reads, in strict mode: an unterminated
quote fails with the row it starts in instead of silently swallowing the rest of the file. A file
without a header (``header_row: 0``) gets the column names the format lists.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator
from itertools import chain
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from gateway.errors import GatewayError, InputError
from gateway.readers.base import SourceRow
from gateway.readers.sniff import DELIMITERS, Utf8Watch, delimiter_name, detect_encoding, sniff_delimiter

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec

FIELD_LIMIT = 1 << 20      # bytes of text in one field (csv.field_size_limit is process-wide)
LINE_LIMIT = 4 << 20       # bytes in one physical line
MAX_COLUMNS = 10_000       # no case file has more; a wider header is a broken or hostile file
READ_BLOCK = 1 << 18       # bytes read and decoded at once after the header (here and in fixed_width)
_UTF8_BOM = b"\xef\xbb\xbf"
# Excel writes (and reads) a first line "sep=;" naming the delimiter: not the header, whatever the delimiter.
_SEP_HINT = re.compile(r"sep=([;,\t|])")


class CsvReader:
    """Rows of a delimited text file; see ``FormatSpec`` for the options."""

    guards_itself = True  # iteration turns unexpected exceptions into InputError itself (no Guarded layer)

    def __init__(self, path: str | os.PathLike[str], fmt: FormatSpec) -> None:
        self.file = str(path)
        self._codec = detect_encoding(path) if fmt.codec == "auto" else fmt.codec
        self._encoding = f"{self._codec} (detected)" if fmt.codec == "auto" else fmt.encoding
        self._skip = max(fmt.header_row - 1, 0)
        self._open_end: str | None = None  # the file's last line when it does not end with a line break
        self._utf8 = Utf8Watch(self._codec, fmt.codec != "auto", self._encoding, self.file)
        try:
            self._fh = open(path, "rb")
        except OSError as exc:
            raise InputError(f"cannot open the file: {exc.strerror}", file=self.file) from None
        try:
            if csv.field_size_limit() != FIELD_LIMIT:
                csv.field_size_limit(FIELD_LIMIT)
            lines: Iterator[str] = chain.from_iterable(self._blocks())
            self.delimiter = fmt.delimiter
            sep_line = False
            if fmt.header_row == 1:
                first = next(lines, None)
                hint = _SEP_HINT.fullmatch(first.rstrip("\r")) if first is not None else None
                if hint is None:
                    lines = chain(() if first is None else (first,), lines)
                else:  # Excel's "sep=;" line names the delimiter; the header is the next line
                    sep_line = True
                    if fmt.delimiter == "auto":
                        self.delimiter = hint.group(1)
            if self.delimiter == "auto":
                first = next(lines, None)
                if first is None:
                    raise InputError("the file is empty: no header row", file=self.file)
                self.delimiter = sniff_delimiter(first, self.file, self._skip + 1)
                lines = chain((first,), lines)
            self._lines, self._quote = lines, fmt.quotechar
            self._line = self._skip + sep_line  # the physical lines read so far
            self._held: list[str] = []  # the line ``_csv`` reads next, before the rest of ``_lines``
            self._csv = csv.reader(self._feed(), delimiter=self.delimiter, quotechar=fmt.quotechar,
                                   doublequote=True, strict=True)
            if fmt.header_row == 0:
                self.header, self.header_row = list(fmt.columns or []), 0
            else:
                self.header, self.header_row = self._read_header(fmt.header_row)
                self._check_delimiter()
            if len(self.header) > MAX_COLUMNS:
                raise InputError(f"the header has {len(self.header)} columns (limit {MAX_COLUMNS}): not a case "
                                 "file, or the wrong delimiter", file=self.file, row=self.header_row)
        except BaseException:
            self._fh.close()
            raise

    def _check_delimiter(self) -> None:
        if len(self.header) != 1:
            return
        counts = {d: self.header[0].count(d) for d in DELIMITERS if d != self.delimiter}
        other = max(counts, key=lambda d: counts[d])
        if counts[other]:
            raise InputError(f"the header row has no {delimiter_name(self.delimiter)} (the delimiter the mapping "
                             f"declares) but {counts[other]} times {delimiter_name(other)}: is the delimiter "
                             f"{delimiter_name(other)}? (or set format.delimiter: auto)",
                             file=self.file, row=self.header_row)

    def _blocks(self) -> Iterator[list[str]]:
        """The lines from ``header_row`` on, decoded, without their line break: a list per block read.

        The first lines (the BOM, a preamble that is never decoded) are read one by one, the rest in
        blocks decoded at once. A block with an undecodable byte is decoded line by line again, so the
        lines before the bad one still come out and the error names its line and byte offset, as for
        a line longer than the limit.
        """
        fh, codec, skip = self._fh, self._codec, self._skip
        lineno = offset = 0
        while lineno < max(skip, 1):
            raw = fh.readline(LINE_LIMIT)
            if not raw:
                return
            lineno += 1
            if len(raw) == LINE_LIMIT and not raw.endswith(b"\n"):
                raise self._too_long(lineno)
            if lineno == 1 and raw.startswith(_UTF8_BOM):
                if codec != "utf-8":
                    raise InputError(f"the file starts with a UTF-8 byte order mark, but the mapping declares "
                                     f"encoding {self._encoding}; set format.encoding to utf-8",
                                     file=self.file, row=1)
                raw, offset = raw[3:], 3
            if lineno > skip:
                self._utf8.check(raw, lineno)
                text = self._decode(raw, lineno, offset)
                if not raw.endswith(b"\n"):
                    self._open_end = text
                    yield [text]
                    return
                yield [text[:-1]]
            offset += len(raw)
        for block, last in line_blocks(fh, lineno, self._too_long):
            if last:
                self._utf8.check(block, lineno + 1)
                self._open_end = self._decode(block, lineno + 1, offset)
                yield [self._open_end]
                break
            self._utf8.check(block, lineno + 1)
            try:
                lines: list[str] | None = block.decode(codec).split("\n")
            except UnicodeDecodeError:
                lines = None
            if lines is None:
                yield from self._line_by_line(block, lineno, offset)  # up to the bad line, then its error
                lineno += block.count(b"\n")
            else:
                lines.pop()  # "" after the block's last line break
                yield lines
                lineno += len(lines)
            offset += len(block)

    def _line_by_line(self, block: bytes, lineno: int, offset: int) -> Iterator[list[str]]:
        for part in block.split(b"\n")[:-1]:
            lineno += 1
            raw = part + b"\n"
            yield [self._decode(raw, lineno, offset)[:-1]]
            offset += len(raw)

    def _decode(self, raw: bytes, lineno: int, offset: int) -> str:
        try:
            return raw.decode(self._codec)
        except UnicodeDecodeError as exc:
            raise InputError(f"byte 0x{raw[exc.start]:02X} at byte offset {offset + exc.start} is not "
                             f"valid {self._encoding} (the encoding the mapping declares); "
                             "is the file saved in another encoding?", file=self.file, row=lineno) from None

    def _too_long(self, lineno: int) -> InputError:
        return InputError(f"line is longer than {LINE_LIMIT} bytes", file=self.file, row=lineno)

    def _feed(self) -> Iterator[str]:
        """``csv``'s input: the held line, then the following ones (a quoted field may span lines).

        Each line gets its line break back (inside quotes it is part of the value), except the file's
        last line when it has none: that one is told by identity, as ``_open_end`` is set only when
        the last block is read, after every earlier line has been handed out.
        """
        held, lines = self._held, self._lines
        while True:
            line = held.pop() if held else next(lines, None)
            if line is None:
                return
            yield line if line is self._open_end else line + "\n"

    def _quoted(self, line: str, lineno: int) -> tuple[list[str] | None, int]:
        """The record starting at ``line`` (physical line ``lineno``) as ``csv`` reads it, and its last line."""
        self._held.append(line)
        before = self._csv.line_num
        try:
            record = next(self._csv, None)
        except csv.Error as exc:
            raise InputError(_csv_problem(exc), file=self.file, row=lineno) from None
        return record, lineno + self._csv.line_num - before - 1

    def _record(self) -> tuple[int, list[str]] | None:
        """The next record and its first physical line; None at the end of the file."""
        line = next(self._lines, None)
        if line is None:
            return None
        start = self._line = self._line + 1
        text = line[:-1] if line[-1:] == "\r" else line
        if self._quote in text or "\r" in text or "\0" in text or len(text) > FIELD_LIMIT:
            record, self._line = self._quoted(line, start)
            return None if record is None else (start, record)
        return start, text.split(self.delimiter) if text else []

    def _read_header(self, header_row: int) -> tuple[list[str], int]:
        seen = False
        while (found := self._record()) is not None:
            seen = True
            start, record = found
            if any(cell.strip() for cell in record):
                return [cell.strip() for cell in record], start
        if not seen:
            where = "the file is empty" if header_row == 1 else f"the file has fewer than {header_row} lines"
            raise InputError(f"{where}: no header row", file=self.file)
        raise InputError(f"no header row: only empty lines from line {header_row} on", file=self.file)

    def __iter__(self) -> Iterator[SourceRow]:
        """The data rows; fully empty lines (and ";;;;" lines) are not rows.

        A line without the quote character, a carriage return inside or a NUL, and shorter than the
        field limit, is exactly its text split on the delimiter (what ``csv`` makes of it, without
        the call); every other line starts a record ``csv`` reads, over as many lines as it spans.
        """
        quote, delimiter, quoted = self._quote, self.delimiter, self._quoted
        lineno = self._line
        try:
            for line in self._lines:
                lineno += 1
                text = line[:-1] if line[-1:] == "\r" else line
                if quote in text or "\r" in text or "\0" in text or len(text) > FIELD_LIMIT:
                    start = lineno
                    record, lineno = quoted(line, start)
                    if record is None:
                        return
                    if any(record):
                        yield SourceRow(start, record)
                elif text.strip(delimiter):
                    yield SourceRow(lineno, text.split(delimiter))
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - what base.Guarded does for other readers (see guards_itself)
            from gateway.readers.isolated import unreadable
            raise InputError(unreadable("csv", exc), file=self.file) from None
        finally:
            self._line = lineno

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CsvReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a field is larger than {FIELD_LIMIT} bytes (an unbalanced quote?)"
    if "unexpected end of data" in text:
        return "a quoted field starting in this row is never closed (unbalanced quote)"
    if "new-line character seen in unquoted field" in text:
        return "line breaks inside an unquoted field (old Mac line endings?)"
    return f"not valid CSV: {text}"


def line_blocks(fh: BinaryIO, lineno: int, too_long: Callable[[int], InputError]) -> Iterator[tuple[bytes, bool]]:
    """The rest of ``fh`` in blocks of whole lines, each ending in its line break, read ``READ_BLOCK`` bytes at a
    time (``False``); then what follows the last line break, if anything (``True``). ``lineno``: the lines read
    before; a line of ``LINE_LIMIT`` bytes or more raises ``too_long(its number)`` (CSV and fixed width)."""
    size = min(READ_BLOCK, LINE_LIMIT)  # so a line inside one read is never over the limit
    carry = b""
    while chunk := fh.read(size):
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n") + 1
        if not cut:
            carry = data
            if len(carry) >= LINE_LIMIT:
                raise too_long(lineno + 1)
            continue
        if data.find(b"\n") >= LINE_LIMIT:  # the line begun in the previous read
            raise too_long(lineno + 1)
        block, carry = data[:cut], data[cut:]
        yield block, False
        lineno += block.count(b"\n")
    carry = carry.removesuffix(b"\x1a")  # DOS's end-of-file mark, which old exports still write: not a line
    if carry:
        yield carry, True
