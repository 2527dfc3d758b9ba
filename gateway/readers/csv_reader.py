"""Streaming CSV reader: declared or detected encoding and delimiter, header row; exact physical row numbers.

The file is read as bytes line by line and decoded here (not by a text wrapper), so an
undecodable byte is reported with its line and byte offset, and a line longer than the limit
fails before it is held in memory. ``csv`` runs in strict mode: an unterminated quote fails with
the row it starts in instead of silently swallowing the rest of the file. A file without a header
(``header_row: 0``) gets the column names the format lists.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from gateway.errors import InputError
from gateway.readers.base import SourceRow
from gateway.readers.sniff import DELIMITERS, delimiter_name, detect_encoding, sniff_delimiter

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec

FIELD_LIMIT = 1 << 20      # bytes of text in one field (csv.field_size_limit is process-wide)
LINE_LIMIT = 4 << 20       # bytes in one physical line
MAX_COLUMNS = 10_000       # no case file has more; a wider header is a broken or hostile file
_UTF8_BOM = b"\xef\xbb\xbf"


class CsvReader:
    """Rows of a delimited text file; see ``FormatSpec`` for the options."""

    def __init__(self, path: str | os.PathLike[str], fmt: FormatSpec) -> None:
        self.file = str(path)
        self._codec = detect_encoding(path) if fmt.codec == "auto" else fmt.codec
        self._encoding = f"{self._codec} (detected)" if fmt.codec == "auto" else fmt.encoding
        self._skip = max(fmt.header_row - 1, 0)
        try:
            self._fh = open(path, "rb")
        except OSError as exc:
            raise InputError(f"cannot open the file: {exc.strerror}", file=self.file) from None
        try:
            if csv.field_size_limit() != FIELD_LIMIT:
                csv.field_size_limit(FIELD_LIMIT)
            lines = self._lines()
            self.delimiter = fmt.delimiter
            if fmt.delimiter == "auto":
                first = next(lines, None)
                if first is None:
                    raise InputError("the file is empty: no header row", file=self.file)
                self.delimiter = sniff_delimiter(first, self.file, self._skip + 1)
                lines = _chain(first, lines)
            self._csv = csv.reader(lines, delimiter=self.delimiter, quotechar=fmt.quotechar,
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

    def _lines(self) -> Iterator[str]:
        readline, codec, skip = self._fh.readline, self._codec, self._skip
        lineno = offset = 0
        while raw := readline(LINE_LIMIT):
            lineno += 1
            if len(raw) == LINE_LIMIT and not raw.endswith(b"\n"):
                raise InputError(f"line is longer than {LINE_LIMIT} bytes", file=self.file, row=lineno)
            if lineno == 1 and raw.startswith(_UTF8_BOM):
                if codec != "utf-8":
                    raise InputError(f"the file starts with a UTF-8 byte order mark, but the mapping declares "
                                     f"encoding {self._encoding}; set format.encoding to utf-8",
                                     file=self.file, row=1)
                raw, offset = raw[3:], 3
            if lineno > skip:
                try:
                    text = raw.decode(codec)
                except UnicodeDecodeError as exc:
                    raise InputError(f"byte 0x{raw[exc.start]:02X} at byte offset {offset + exc.start} is not "
                                     f"valid {self._encoding} (the encoding the mapping declares); "
                                     "is the file saved in another encoding?", file=self.file, row=lineno) from None
                yield text
            offset += len(raw)

    def _read_header(self, header_row: int) -> tuple[list[str], int]:
        prev = 0
        try:
            for record in self._csv:
                start, prev = prev + 1 + self._skip, self._csv.line_num
                if any(cell.strip() for cell in record):
                    return [cell.strip() for cell in record], start
        except csv.Error as exc:
            raise InputError(_csv_problem(exc), file=self.file, row=prev + 1 + self._skip) from None
        if prev == 0:
            where = "the file is empty" if header_row == 1 else f"the file has fewer than {header_row} lines"
            raise InputError(f"{where}: no header row", file=self.file)
        raise InputError(f"no header row: only empty lines from line {header_row} on", file=self.file)

    def __iter__(self) -> Iterator[SourceRow]:
        reader, skip = self._csv, self._skip
        prev = reader.line_num
        try:
            for record in reader:
                start, prev = prev + 1 + skip, reader.line_num
                if any(record):  # fully empty lines (and ";;;;" lines) are not rows
                    yield SourceRow(start, record)
        except csv.Error as exc:
            raise InputError(_csv_problem(exc), file=self.file, row=prev + 1 + skip) from None

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CsvReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a field is larger than {FIELD_LIMIT} bytes (an unbalanced quote?)"
    if "unexpected end of data" in text:
        return "a quoted field starting in this row is never closed (unbalanced quote)"
    if "new-line character seen in unquoted field" in text:
        return "line breaks inside an unquoted field (old Mac line endings?)"
    return f"not valid CSV: {text}"
