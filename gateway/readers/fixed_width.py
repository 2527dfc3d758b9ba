"""Fixed-width records (legacy collection software): columns by position, amounts in implied decimals.

Each line is one record; ``format.columns`` gives every column's 1-based ``start`` and ``length``
in characters, and ``decimals`` for amounts written without a separator ("0000123456" with
decimals 2 is 1234.56, written out in the mapping's decimal notation so the amount parser reads
it like any other cell). Lines are decoded like CSV lines (declared or detected encoding).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from gateway.errors import InputError
from gateway.readers.base import SourceRow
from gateway.readers.csv_reader import LINE_LIMIT
from gateway.readers.sniff import detect_encoding

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec


class FixedWidthReader:
    """Rows of a fixed-width text file; lines before ``header_row`` (a title block) are skipped."""

    def __init__(self, path: str | os.PathLike[str], fmt: FormatSpec) -> None:
        from gateway.mapping.spec import FixedColumn

        self.file = str(path)
        self._codec = detect_encoding(path) if fmt.codec == "auto" else fmt.codec
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
        lineno = 0
        readline, codec, cols = self._fh.readline, self._codec, self._cols
        while raw := readline(LINE_LIMIT):
            lineno += 1
            if len(raw) == LINE_LIMIT and not raw.endswith(b"\n"):
                raise InputError(f"line is longer than {LINE_LIMIT} bytes", file=self.file, row=lineno)
            if lineno <= self._skip:
                continue
            try:
                line = raw.decode(codec).rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise InputError(f"byte 0x{raw[exc.start]:02X} at position {exc.start + 1} is not valid {codec}",
                                 file=self.file, row=lineno) from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            values = []
            for start, end, decimals, name in cols:
                cell = line[start:end].strip()
                if decimals and cell:
                    cell = self._implied(cell, decimals, lineno, name)
                values.append(cell)
            yield SourceRow(lineno, values)

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
