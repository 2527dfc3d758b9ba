"""Fixed-width records (legacy collection software): columns by position, amounts in implied decimals.

Each line is one record; ``format.columns`` gives every column's 1-based ``start`` and ``length``
in characters, and ``decimals`` for amounts written without a separator ("0000123456" with
decimals 2 is 1234.56, written out in the mapping's decimal notation so the amount parser reads
it like any other cell). Lines are decoded like CSV lines (declared or detected encoding).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import chain
from operator import itemgetter
from types import TracebackType
from typing import TYPE_CHECKING

from gateway.errors import GatewayError, InputError
from gateway.readers.base import SourceRow
from gateway.readers.csv_reader import LINE_LIMIT, line_blocks
from gateway.readers.sniff import Utf8Watch, detect_encoding

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec


class FixedWidthReader:
    """Rows of a fixed-width text file; lines before ``header_row`` (a title block) are skipped."""

    guards_itself = True  # iteration turns unexpected exceptions into InputError itself (no Guarded layer)

    def __init__(self, path: str | os.PathLike[str], fmt: FormatSpec) -> None:
        from gateway.mapping.spec import FixedColumn

        self.file = str(path)
        self._codec = detect_encoding(path) if fmt.codec == "auto" else fmt.codec
        self._utf8 = Utf8Watch(self._codec, fmt.codec != "auto", fmt.encoding, self.file)
        cols = fmt.columns if isinstance(fmt.columns, dict) else {}
        self.header = list(cols)
        self.header_row = 0
        self._skip = max(fmt.header_row - 1, 0)
        self._decimal = fmt.decimal_separator
        self._cols = [(c.start - 1, c.start - 1 + c.length, c.decimals, name) for name, c in cols.items()
                      if isinstance(c, FixedColumn)]
        try:
            self._fh = open(path, "rb")
        except OSError as exc:
            raise InputError(f"cannot open the file: {exc.strerror}", file=self.file) from None

    def __iter__(self) -> Iterator[SourceRow]:
        lineno = self._skip
        cols, decimal_cols = self._cols, [(i, c[2], c[3]) for i, c in enumerate(self._cols) if c[2]]
        # One C call cuts every column out of a line (itemgetter of slices gives a tuple from two columns on).
        cut = itemgetter(*(slice(start, end) for start, end, _, _ in cols)) if len(cols) > 1 else None
        try:
            for line in chain.from_iterable(self._blocks()):
                lineno += 1
                if not line.strip():
                    continue
                if cut is not None:
                    values = [cell.strip() for cell in cut(line)]
                else:
                    values = [line[start:end].strip() for start, end, _, _ in cols]
                for i, decimals, name in decimal_cols:
                    if values[i]:
                        values[i] = self._implied(values[i], decimals, lineno, name)
                yield SourceRow(lineno, values)
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - what base.Guarded does for other readers (see guards_itself)
            from gateway.readers.isolated import unreadable
            raise InputError(unreadable("fixed_width", exc), file=self.file) from None

    def _blocks(self) -> Iterator[list[str]]:
        """The lines after ``header_row - 1``, decoded, without line breaks: a list per block read.

        The lines up to the first data line are read one by one (a title block is never decoded), the
        rest in blocks decoded at once; a block with an undecodable byte is decoded line by line again,
        so the lines before the bad one still come out and the error names its line, as for a line
        longer than the limit.
        """
        fh, skip = self._fh, self._skip
        lineno = 0
        while lineno < max(skip, 1):
            raw = fh.readline(LINE_LIMIT)
            if not raw:
                return
            lineno += 1
            if len(raw) == LINE_LIMIT and not raw.endswith(b"\n"):
                raise self._too_long(lineno)
            if lineno > skip:
                self._utf8.check(raw, lineno)
                line = self._decode(raw, lineno).rstrip("\r\n")
                yield [line.removeprefix("\ufeff") if lineno == 1 else line]
        for block, last in line_blocks(fh, lineno, self._too_long):
            if last:
                self._utf8.check(block, lineno + 1)
                yield [self._decode(block, lineno + 1).rstrip("\r\n")]
                break
            self._utf8.check(block, lineno + 1)
            try:
                lines: list[str] | None = block.decode(self._codec).split("\n")
            except UnicodeDecodeError:
                lines = None
            if lines is None:
                for part in block.split(b"\n")[:-1]:  # up to the bad line, then its error
                    lineno += 1
                    yield [self._decode(part + b"\n", lineno).rstrip("\r\n")]
            else:
                lines.pop()  # "" after the block's last line break
                yield [line.rstrip("\r") for line in lines]
                lineno += len(lines)

    def _decode(self, raw: bytes, lineno: int) -> str:
        try:
            return raw.decode(self._codec)
        except UnicodeDecodeError as exc:
            raise InputError(f"byte 0x{raw[exc.start]:02X} at position {exc.start + 1} is not valid {self._codec}",
                             file=self.file, row=lineno) from None

    def _too_long(self, lineno: int) -> InputError:
        return InputError(f"line is longer than {LINE_LIMIT} bytes", file=self.file, row=lineno)

    def _implied(self, cell: str, decimals: int, lineno: int, name: str) -> str:
        sign = ""
        if cell[0] in "+-":
            sign, cell = cell[0].replace("+", ""), cell[1:].strip()
        elif cell[-1] in "+-":  # trailing sign, as COBOL-style exports write it
            sign, cell = cell[-1].replace("+", ""), cell[:-1].strip()
        if not cell.isdigit():
            return sign + cell  # not digits: let the amount parser report it with the column
        cell = cell.lstrip("0").rjust(decimals + 1, "0")
        return f"{sign}{cell[:-decimals]}{self._decimal}{cell[-decimals:]}"

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> FixedWidthReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
