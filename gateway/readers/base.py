"""The reader family: every input format yields the same rows with their provenance.

A reader opens a file, reads its header at once (so a file without one fails before any row
is mapped) and then streams ``SourceRow``s; it never holds the whole file in memory. Readers are
registered by format type in ``READERS``; the mapping's ``format.type`` picks one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import msgspec

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec


class SourceRow(msgspec.Struct, frozen=True, gc=False):
    """One data record: ``row`` is its physical 1-based line (or record) number in the file."""

    row: int
    values: list[str]


class Reader(Protocol):
    """What every reader offers: the header, the data rows in file order, ``close`` (or ``with``)."""

    file: str
    header: list[str]
    header_row: int

    def __iter__(self) -> Iterator[SourceRow]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Reader: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


# format type -> "module:Class"; issue-3 readers (xlsx, xls, ods, xml, fixed_width) register here.
READERS: dict[str, str] = {"csv": "gateway.readers.csv_reader:CsvReader"}


def open_reader(path: str | os.PathLike[str], fmt: FormatSpec) -> Reader:
    """Open ``path`` with the reader for ``fmt.type``; raises InputError if the file is unusable."""
    target = READERS.get(fmt.type)
    if target is None:
        raise ConfigError(f"format type '{fmt.type}' is not supported yet (supported: {', '.join(READERS)})",
                          key="format.type")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    reader: Reader = cls(path, fmt)
    return reader
