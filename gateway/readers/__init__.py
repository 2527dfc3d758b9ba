"""Readers turn a client's file into rows of text with their physical row numbers."""

from gateway.readers.base import READERS, Reader, SourceRow, open_reader

__all__ = ["READERS", "Reader", "SourceRow", "open_reader"]
