"""The child processes that parse a client's spreadsheet or XML file (readers/isolated.py, mapping/
sample_isolated.py) do not import from the working directory: a ``gateway`` package planted in serve's
directory is never what reads the file. Real child processes, a real XLSX written by xlsxwriter."""

from __future__ import annotations

from pathlib import Path

import pytest
import xlsxwriter

from gateway.config import LimitsConfig
from gateway.mapping.sample_isolated import read_sample_isolated
from gateway.mapping.spec import FormatSpec
from gateway.readers.isolated import IsolatedReader
from gateway.readers.base import READERS


def workbook(path: Path) -> Path:
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    for r, row in enumerate([["Rechnungsnr", "Betrag"], ["RE-1", "10,00"], ["RE-2", "20,00"]]):
        sheet.write_row(r, 0, row)
    book.close()
    return path


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a ``gateway`` package that leaves a mark when imported."""
    fake = tmp_path / "cwd" / "gateway"
    (fake / "readers").mkdir(parents=True)
    (fake / "mapping").mkdir()
    mark = tmp_path / "imported-the-planted-package"
    code = f"open({str(mark)!r}, 'w').close()\n"
    for init in (fake / "__init__.py", fake / "readers" / "__init__.py", fake / "mapping" / "__init__.py"):
        init.write_text(code)
    monkeypatch.chdir(fake.parent)
    return mark


def test_the_reader_child_does_not_import_from_the_working_directory(planted: Path, tmp_path: Path) -> None:
    path = workbook(tmp_path / "claims.xlsx")
    fmt = FormatSpec(type="xlsx")
    with IsolatedReader(READERS["xlsx"], path, fmt, LimitsConfig()) as reader:
        rows = [src.values for src in reader]
    assert reader.header == ["Rechnungsnr", "Betrag"] and [v[0] for v in rows] == ["RE-1", "RE-2"]
    assert not planted.exists()


def test_the_sample_child_does_not_import_from_the_working_directory(planted: Path, tmp_path: Path) -> None:
    sample = read_sample_isolated(workbook(tmp_path / "claims.xlsx"), "xlsx", LimitsConfig())
    assert "Rechnungsnr" in str(sample)
    assert not planted.exists()
