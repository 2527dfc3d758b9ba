"""The claim page's tools and the list's partner filter: labels (catalogue, attach, detach, rename, colour,
filter), document download, refresh and long-term monitoring offered only where the claim's partner declares
them (and refused with a clear note when posted anyway), the claims list filtered by partner."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from gateway.bootstrap import App
from gateway.domain.model import Claim
from gateway.entrypoints.web.routes_claims import disposition
from gateway.services import submit
from gateway.services.claim_queries import get_claim, history
from gateway.services.console import submissions
from gateway.services.dispatch import Dispatcher
from gateway.store.schema import outbox
from tests.integration.web.conftest import Console, claim_ids, stored_gateway

# A second agency that takes deliveries and the usual requests, but no refresh and no monitoring.
BASIC = {"adapter": "directory", "certificate": "var/keys/partners/basic-agency.crt",
         "options": {"path": "var/partners/basic-agency"},
         "capabilities": ["deliver", "status_pull", "cancel", "direct_payment", "message"]}
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The demo file for both clients, plus claim BASIC-1 of client demo at basic-agency, all handed over."""
    for app in stored_gateway(request, tmp_path_factory, partners={"basic-agency": BASIC}):
        today = date.today()
        plain: dict[str, Any] = {
            "client_id": "demo", "creditor_reference": "BASIC-1", "principal_amount": "80.00", "currency": "EUR",
            "invoice_date": (today - timedelta(days=50)).isoformat(),
            "due_date": (today - timedelta(days=20)).isoformat(), "partner_id": "basic-agency",
            "debtor": {"kind": "consumer", "first_name": "Bruno", "last_name": "Basis", "birth_date": "1970-01-02",
                       "addresses": [{"street": "Weg", "house_number": "1", "postal_code": "10115",
                                      "city": "Berlin", "country": "DE"}]}}
        answer = submit.submit_claims(app, "demo", [submit.Draft("BASIC-1", msgspec.convert(plain, Claim))])
        assert answer.results[0].outcome == "accepted", answer.results[0].findings
        Dispatcher(app, owner="t").drain()
        yield app


def refs(html: str) -> list[str]:
    return re.findall(r'<a href="/claims/\d+">([^<]+)</a>', html)


def outbox_ops(app: App, claim_id: int) -> list[str]:
    with app.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.operation, outbox.c.payload).order_by(outbox.c.id)).all()
    docs = [(op, json.loads(payload)) for op, payload in rows]
    return [op for op, d in docs if d.get("claim_id") == claim_id or claim_id in d.get("claim_ids", [])]


def note(c: Any, path: str) -> str:
    """The latest note shown on ``path`` (the notes of earlier posts are shown with it)."""
    found = re.findall(r'<p class="note note-(\w+)" role="status">([^<]*)</p>', c.get(path).text)
    assert found, f"no note on {path}"
    return f"{found[-1][0]}: {found[-1][1]}"


def test_the_list_filters_by_partner(console: Console) -> None:
    c = console.client("anna")
    page = c.get("/claims?sort=reference&dir=asc").text
    assert '<option value="basic-agency"' in page and '<option value="demo-agency"' in page
    assert "BASIC-1" in refs(page) and len(refs(page)) == 9
    assert refs(c.get("/claims?partner=basic-agency").text) == ["BASIC-1"]
    at_demo = refs(c.get("/claims?partner=demo-agency").text)
    assert len(at_demo) == 8 and "BASIC-1" not in at_demo
    assert len(refs(c.get("/claims?partner=no-such-agency").text)) == 9  # an unknown partner is ignored
    assert "partner=basic-agency" in c.get("/claims?partner=basic-agency").text  # kept in sort and page links
    assert '<option value="basic-agency"' not in console.client("ben").get("/claims").text  # ben has none there


def test_refresh_and_monitoring_only_where_the_partner_declares_them(console: Console) -> None:
    c = console.client("anna")
    ids = claim_ids(console.app, "demo")
    demo, basic, held = ids["RE-2025-0001"], ids["BASIC-1"], ids["RE-2025-0004"]
    page = c.get(f"/claims/{demo}").text
    assert f'action="/claims/{demo}/refresh"' in page and f'action="/claims/{demo}/monitoring"' in page
    token = console.csrf(c, f"/claims/{demo}")
    assert c.post(f"/claims/{demo}/refresh", data={"csrf": token}).status_code == 303
    assert note(c, f"/claims/{demo}") == "ok: Aktualisierung beim Inkassobüro angefragt."
    c.post(f"/claims/{demo}/monitoring", data={"csrf": token})
    assert note(c, f"/claims/{demo}") == "ok: Langzeitüberwachung beantragt."
    assert outbox_ops(console.app, demo)[-2:] == ["refresh", "request_monitoring"]

    page = c.get(f"/claims/{basic}").text  # basic-agency declares neither: not offered
    assert "/refresh" not in page and "/monitoring" not in page and f'action="/claims/{basic}/message"' in page
    before = len(history(console.app, "demo", basic))
    for what, text in (("refresh", "refresh requests"), ("monitoring", "long-term monitoring requests")):
        r = c.post(f"/claims/{basic}/{what}", data={"csrf": token})
        assert r.status_code == 303  # posted anyway: refused, said so, nothing recorded or queued
        assert note(c, f"/claims/{basic}") == f"error: Nicht möglich: partner basic-agency does not accept {text}"
    assert len(history(console.app, "demo", basic)) == before and outbox_ops(console.app, basic) == ["deliver_batch"]

    assert "/refresh" not in c.get(f"/claims/{held}").text  # held: the agency does not have it
    c.post(f"/claims/{held}/refresh", data={"csrf": token})
    assert "the agency does not have the claim (held)" in note(c, f"/claims/{held}")
    vera = console.client("vera")
    assert vera.post(f"/claims/{demo}/refresh", data={"csrf": console.csrf(vera, "/claims")}).status_code == 403


def test_labels_defined_attached_renamed_recoloured_filtered_and_detached(console: Console) -> None:
    c = console.client("anna")
    ids = claim_ids(console.app, "demo")
    cid, other = ids["RE-2025-0002"], ids["RE-2025-0003"]
    token = console.csrf(c, "/labels")
    assert c.post("/labels", data={"csrf": token, "name": "Rückruf", "colour": "red"}).status_code == 303
    assert note(c, "/labels") == "ok: Markierung gespeichert."
    c.post("/labels", data={"csrf": token, "name": "x", "colour": "#ff0000"})  # only palette names
    assert note(c, "/labels").startswith("error: Nicht möglich: colour: colour must be one of red")
    page = c.get(f"/claims/{cid}").text
    assert '<option value="Rückruf">' in page
    c.post(f"/claims/{cid}/labels", data={"csrf": token, "add": "Rückruf"})
    assert note(c, f"/claims/{cid}") == "ok: Markierungen geändert."
    assert get_claim(console.app, "demo", cid).labels == ["Rückruf"]
    assert '<span class="label lb-red">Rückruf' in c.get(f"/claims/{cid}").text
    listed = c.get("/claims").text
    assert listed.count('<span class="label lb-red">Rückruf</span>') == 1
    assert refs(c.get("/claims?label=R%C3%BCckruf").text) == ["RE-2025-0002"]

    c.post("/labels", data={"csrf": token, "name": "Rückruf", "colour": "green"})
    assert '<span class="label lb-green">Rückruf' in c.get(f"/claims/{cid}").text
    c.post(f"/claims/{other}/labels", data={"csrf": token, "add": "Rückruf"})
    r = c.post("/labels/rename", data={"csrf": token, "label": "Rückruf", "name": "Rückruf bis Freitag"})
    assert r.status_code == 303, r.text
    assert note(c, "/labels") == "ok: Markierung umbenannt (2 Forderung(en) geändert)."
    assert get_claim(console.app, "demo", cid).labels == ["Rückruf bis Freitag"]
    assert get_claim(console.app, "demo", other).labels == ["Rückruf bis Freitag"]
    assert [e["kind"] for e in history(console.app, "demo", cid)][-2:] == ["labels_set", "labels_set"]
    c.post("/labels", data={"csrf": token, "name": "Prüfen", "colour": "blue"})
    c.post("/labels/rename", data={"csrf": token, "label": "Prüfen", "name": "Rückruf bis Freitag"})
    assert "exists already" in note(c, "/labels")  # two labels never merge by accident

    c.post(f"/claims/{cid}/labels", data={"csrf": token, "remove": "Rückruf bis Freitag"})
    assert get_claim(console.app, "demo", cid).labels == []
    assert refs(c.get("/claims?label=R%C3%BCckruf%20bis%20Freitag").text) == ["RE-2025-0003"]

    ben = console.client("ben")  # another client's labels and claims stay out of reach
    assert "Rückruf" not in ben.get("/labels").text
    ben_token = console.csrf(ben, "/labels")
    assert ben.post(f"/claims/{other}/labels", data={"csrf": ben_token, "remove": "Rückruf bis Freitag"}
                    ).status_code == 404
    assert get_claim(console.app, "demo", other).labels == ["Rückruf bis Freitag"]
    vera = console.client("vera")  # read only: sees labels, changes none
    assert "Rückruf bis Freitag" in vera.get("/labels").text and 'action="/labels/rename"' not in vera.get(
        "/labels").text
    assert vera.post("/labels", data={"csrf": console.csrf(vera, "/labels"), "name": "y", "colour": "red"}
                     ).status_code == 403
    ben.post("/labels/delete", data={"csrf": ben_token, "label": "Rückruf bis Freitag"})  # ben's own: none
    assert get_claim(console.app, "demo", other).labels == ["Rückruf bis Freitag"]
    c.post("/labels/delete", data={"csrf": token, "label": "Rückruf bis Freitag"})
    assert note(c, "/labels") == "ok: Markierung gelöscht (1 Forderung(en) geändert)."
    assert get_claim(console.app, "demo", other).labels == [] and "Rückruf bis Freitag" not in c.get("/labels").text


def test_documents_download_for_the_own_client_only(console: Console, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = console.client("anna")
    today = date.today()
    form = {"reference": "DOC-1", "amount": "12,00", "invoice_date": (today - timedelta(days=40)).isoformat(),
            "due_date": (today - timedelta(days=10)).isoformat(), "kind": "consumer", "first_name": "Doris",
            "last_name": "Dokument", "birth_date": "1975-03-04", "street": "Am Markt", "house_number": "2",
            "postal_code": "20095", "city": "Hamburg", "country": "DE"}
    name = 'Rechnung "Dokument";\r\nX-Evil: 1 ../ä.pdf'
    r = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **form},
               files={"document": (name, PDF, "application/pdf")})
    assert r.status_code == 303, r.text
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    doc_id = get_claim(console.app, "demo", cid).documents[0]["id"]
    url = f"/claims/{cid}/documents/{doc_id}"
    assert f'href="{url}"' in c.get(f"/claims/{cid}").text
    got = c.get(url)
    assert got.status_code == 200 and got.content == PDF
    header = got.headers["content-disposition"]
    assert header.startswith('attachment; filename="') and "\r" not in header and "\n" not in header
    assert "X-Evil" not in got.headers and header.count('"') == 2
    assert got.headers["content-type"] == "application/octet-stream"
    assert console.client("vera").get(url).content == PDF  # read role may download
    assert console.client("ben").get(url).status_code == 404  # another client: like an unknown one
    other = claim_ids(console.app, "demo")["RE-2025-0001"]
    assert c.get(f"/claims/{other}/documents/{doc_id}").status_code == 404  # not that claim's document
    assert console.client("olga").get(url).status_code == 404  # the operator has no client pages
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "web.document" in logged and "Dokument" not in logged and "Rechnung" not in logged


def test_download_names_cannot_break_the_header() -> None:
    assert disposition("rechnung.pdf") == "attachment; filename=\"rechnung.pdf\"; filename*=UTF-8''rechnung.pdf"
    assert disposition("a\\b/../Prüfung 1.pdf") == (
        "attachment; filename=\"Pr_fung_1.pdf\"; filename*=UTF-8''Pr%C3%BCfung%201.pdf")
    assert disposition('"\r\n') == "attachment; filename=\"_\"; filename*=UTF-8''%22"
    assert disposition("...") == "attachment; filename=\"document\"; filename*=UTF-8''document"


def run_row_class(html: str, ref: str) -> str:
    found = re.search(rf'<tr class="([^"]+)">\s*<td><a href="/runs/{ref}">', html)
    assert found, f"run {ref} not listed"
    return found.group(1)


def test_a_run_is_yellow_until_the_partner_confirmed_every_claim_then_green(console: Console) -> None:
    c = console.client("anna")
    demo_run = submissions(console.app, "demo", limit=50, offset=0).rows[-1]["reference"]  # the demo file
    runs = c.get("/runs").text
    assert run_row_class(runs, demo_run) == "run-confirmed"  # all handed over (the held minor was not sent)
    assert "vom Inkassobüro bestätigt" in runs
    today = date.today()
    form = {"reference": "RUN-Y-1", "amount": "40,00", "invoice_date": (today - timedelta(days=40)).isoformat(),
            "due_date": (today - timedelta(days=10)).isoformat(), "kind": "consumer", "first_name": "Yvonne",
            "last_name": "Gelb", "birth_date": "1970-01-01", "street": "Weg", "house_number": "2",
            "postal_code": "10115", "city": "Berlin", "country": "DE"}
    r = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **form})
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    run = get_claim(console.app, "demo", cid).submission
    assert run_row_class(c.get("/runs").text, run) == "run-processing"  # queued: not at the agency yet
    assert 'class="pill run-processing"' in c.get(f"/runs/{run}").text
    Dispatcher(console.app, owner="t").drain()  # the agency's receipt: handed over
    assert run_row_class(c.get("/runs").text, run) == "run-confirmed"
    assert 'class="pill run-confirmed"' in c.get(f"/runs/{run}").text


def test_a_runs_page_searches_its_claims_without_the_text_in_a_url(console: Console) -> None:
    c = console.client("anna")
    run = submissions(console.app, "demo", limit=50, offset=0).rows[-1]["reference"]
    page = c.get(f"/runs/{run}").text
    assert len(refs(page)) == 8 and "8 von 8" in page
    token = console.csrf(c, f"/runs/{run}")
    r = c.post(f"/runs/{run}/search", data={"csrf": token, "q": "Lukas Becker"})  # a debtor's name
    assert r.status_code == 303 and "Becker" not in r.headers["location"]
    assert refs(c.get(f"/runs/{run}").text) == ["RE-2025-0004"]
    assert c.get("/claims").text.count('href="/claims/') > 1  # the claims list keeps its own search
    c.post(f"/runs/{run}/search", data={"csrf": token, "q": "0003"})
    assert refs(c.get(f"/runs/{run}").text) == ["RE-2025-0003"]
    c.post(f"/runs/{run}/search", data={"csrf": token, "q": ""})
    assert len(refs(c.get(f"/runs/{run}").text)) == 8
    ben = console.client("ben")  # another client's run: not found, whatever its search
    ben.post(f"/runs/{run}/search", data={"csrf": console.csrf(ben, "/runs"), "q": "Becker"})
    assert ben.get(f"/runs/{run}").status_code == 404
