"""The claims list's filters (label, date range with its three-month default), its "recent changes" column,
and the export of the current filter as CSV and XLSX: formula-safe, and only the user's own client's claims."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from decimal import Decimal

import openpyxl  # type: ignore[import-untyped]

from gateway.domain.model import Address, Claim, Debtor
from gateway.services import claim_ops, submit
from tests.integration.web.conftest import Console, claim_ids


def refs(html: str) -> list[str]:
    return re.findall(r'<a href="/claims/\d+">([^<]+)</a>', html)


def _formula_claim(console: Console) -> None:
    debtor = Debtor(first_name="Eva", last_name="Formel", addresses=[Address(street="Weg", house_number="1",
                                                                             postal_code="10115", city="Berlin")])
    claim = Claim(client_id="demo", creditor_reference="FORMULA-1", principal_amount=Decimal("10.00"),
                  invoice_number="=HYPERLINK(\"http://x\")", debtor=debtor,
                  invoice_date=date.today() - timedelta(days=20), due_date=date.today() - timedelta(days=5))
    r = submit.submit_claims(console.app, "demo", [submit.Draft(reference="FORMULA-1", claim=claim)])
    assert r.results[0].outcome in ("accepted", "held"), r.results[0].findings


def test_list_filters_by_label_and_date_and_shows_recent_changes(console: Console) -> None:
    c = console.client("anna")
    ids = claim_ids(console.app, "demo")
    page = c.get("/claims").text
    three_months = (date.today() - timedelta(days=91)).isoformat()
    assert f'name="from" value="{three_months}"' in page  # the default range, shown and changeable
    assert len(refs(page)) == 8 and 'name="label"' not in page  # no labels yet: no label filter
    recent = re.search(rf'<td class="recent"><a href="/claims/{ids["RE-2025-0002"]}#history">(.*?)</a>', page)
    assert recent and recent.group(1).count('class="change"') == 3  # intake, queued, handed over...: the last 3
    future = (date.today() + timedelta(days=1)).isoformat()
    assert refs(c.get(f"/claims?from={future}").text) == []
    assert len(refs(c.get("/claims?from=&to=").text)) == 8  # no bounds at all
    claim_ops.set_labels(console.app, "demo", ids["RE-2025-0003"], ["Prüfen"])
    labelled = c.get("/claims").text
    assert '<option value="Prüfen"' in labelled
    assert refs(c.get("/claims?label=Prüfen").text) == ["RE-2025-0003"]
    assert "Prüfen" not in console.client("ben").get("/claims").text  # another client's labels stay its own


def test_export_is_the_current_filter_formula_safe_and_own_claims_only(console: Console) -> None:
    _formula_claim(console)
    c = console.client("anna")
    r = c.get("/claims/export.csv?state=held")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:3] == ["claim_id", "creditor_reference", "invoice_number"]
    assert {row[3] for row in rows[1:]} == {"held"} and len(rows) >= 2
    everything = list(csv.reader(io.StringIO(c.get("/claims/export.csv").content.decode("utf-8-sig")),
                                 delimiter=";"))
    formula = next(row for row in everything if row[1] == "FORMULA-1")
    assert formula[2] == "'=HYPERLINK(\"http://x\")"  # defused: a spreadsheet shows it as text
    assert {int(row[0]) for row in everything[1:]} == set(claim_ids(console.app, "demo").values())
    book = openpyxl.load_workbook(io.BytesIO(c.get("/claims/export.xlsx").content))
    sheet = book["claims"]
    cells = {row[1]: row for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert cells["FORMULA-1"][2] == "'=HYPERLINK(\"http://x\")" and sheet.cell(2, 1).data_type == "s"
    theirs = list(csv.reader(io.StringIO(console.client("ben").get("/claims/export.csv").content
                                         .decode("utf-8-sig")), delimiter=";"))
    assert {int(row[0]) for row in theirs[1:]} == set(claim_ids(console.app, "other").values())
    assert c.get("/claims/export.pdf").status_code == 404
    assert console.client().get("/claims/export.csv").status_code == 303  # not logged in: to the login page
