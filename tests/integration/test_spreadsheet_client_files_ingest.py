"""A workbook as a client's tooling writes it, ingested end to end: what the ack says about a formula no program
calculated, a German postcode stored as a number and a row hidden by a filter (the unit tests: tests/unit/test_spreadsheet_client_files.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl

from bench.gen import HEADER, rows as sample_rows
from gateway.bootstrap import App
from gateway.services.ingest import ingest_file
from tests.conftest import ROOT

DEMO_MAPPING = (ROOT / "mappings" / "demo.yaml").read_text(encoding="utf-8")


def test_xlsx_ack_names_unsaved_formula_postcode_given_its_zero_and_hidden_row(app: App, tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    amount, plz = HEADER.index("Betrag"), HEADER.index("PLZ")
    for n, values in enumerate(sample_rows(4)):
        cells: list[object] = list(values)
        if n == 0:
            cells[plz] = 1067  # typed as 01067 into a General cell: Excel keeps the number
        if n == 1:
            cells[amount] = "=100*1.19"  # openpyxl writes the formula and no value: nothing calculated it
        ws.append(cells)
    ws.row_dimensions[5].hidden = True  # the fourth invoice filtered out of sight
    path = tmp_path / "export.xlsx"
    wb.save(path)
    (tmp_path / "x.yaml").write_text(DEMO_MAPPING.replace("type: csv", "type: xlsx"), encoding="utf-8")
    result = ingest_file(app, path, "demo", mapping_path=tmp_path / "x.yaml")
    assert (result.rows, result.accepted, result.rejected) == (4, 2, 1)
    with open(str(result.ack_path), encoding="utf-8", newline="") as fh:
        ack = list(csv.DictReader(fh, delimiter=";"))
    assert [(a["row"], a["outcome"], a["codes"]) for a in ack] == [
        ("2", "accepted", "invalid_value"), ("3", "rejected", "missing_field"), ("4", "accepted", ""),
        ("5", "held", "awaiting_release")]
    assert "the row is hidden in the sheet" in ack[3]["messages"]
    assert ack[0]["messages"].startswith("PLZ: German postal code '1067' has 4 digits: taken as '01067'")
    assert ack[1]["messages"].startswith("Betrag: the cell holds a formula without a saved value")
    assert "is empty" not in ack[1]["messages"]
