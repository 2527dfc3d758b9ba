"""The operator's mapping workshop: a sample drafted into a mapping (suggest), checked, previewed with every
finding, installed and used by the next ingest at once; hostile samples refused; the sample kept encrypted."""

from __future__ import annotations

import logging
import os
import re
import time

import pytest
from starlette.testclient import TestClient

from gateway.entrypoints.web.app import SESSION_COOKIE
from gateway.services.ingest import ingest_file
from tests.conftest import ROOT
from tests.integration.web.conftest import DEMO, Console

HOSTILE = ROOT / "tests" / "fixtures" / "hostile"


def _textarea(page: str) -> str:
    found = re.search(r'<textarea name="mapping"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, page
    import html
    return html.unescape(found.group(1))


def _new_client(console: Console, c: TestClient, client_id: str) -> None:
    token = console.csrf(c, "/operator/clients")
    r = c.post("/operator/clients", data={"csrf": token, "client_id": client_id, "name": client_id.title(),
                                          "default_partner": "demo-agency"})
    assert r.headers["location"] == f"/operator/clients/{client_id}", c.get(r.headers["location"]).text


def test_sample_to_draft_to_check_preview_and_install(console: Console, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = console.app
    c = console.client("olga")
    _new_client(console, c, "newco")
    assert re.search(r"newco</a></td>\s*<td>newco.yaml</td><td>Datei fehlt", c.get("/operator/mappings").text)
    token = console.csrf(c, "/operator/mappings/newco")
    r = c.post("/operator/mappings/newco/sample", data={"csrf": token},
               files={"file": ("Mahnliste Müller.csv", DEMO.read_bytes(), "text/csv")})
    assert r.status_code == 200 and "Entwurf aus der Beispieldatei" in r.text
    draft = _textarea(r.text)
    assert 'client: "newco"' in draft and 'type: "csv"' in draft and "creditor_reference" in draft
    assert "Mahnliste Müller.csv" in r.text  # on the page, never in the cookie or a log
    kept = list((app.config.var_dir / "web-mapping-samples").iterdir())
    assert len(kept) == 1 and b"Becker" not in kept[0].read_bytes()  # encrypted at rest, no plain copy left

    ok = c.post("/operator/mappings/newco", data={"csrf": token, "mapping": draft, "do": "check"})
    assert 'id="check-ok"' in ok.text and "Mandant newco, csv" in ok.text
    broken = draft.replace("format:", "formatt:", 1)
    bad = c.post("/operator/mappings/newco", data={"csrf": token, "mapping": broken, "do": "check"})
    assert "Die Zuordnung ist fehlerhaft" in bad.text and "formatt" in bad.text and _textarea(bad.text) == broken
    assert "line" in bad.text  # where it is wrong

    pre = c.post("/operator/mappings/newco", data={"csrf": token, "mapping": draft, "do": "preview"})
    counts = re.search(r'<p id="preview-counts">(.*?)</p>', pre.text, re.S)
    assert counts and "zurückgehalten: 1" in counts.group(1)  # the minor
    assert "debtor_minor" in pre.text and "RE-2025-0004" in pre.text and 'class="out-held"' in pre.text

    done = c.post("/operator/mappings/newco", data={"csrf": token, "mapping": draft, "do": "install"})
    assert 'id="installed"' in done.text and "newco.yaml" in done.text
    path = app.config.mappings_dir / "newco.yaml"
    assert path.read_text(encoding="utf-8").strip() == draft.strip()
    assert app.mappings.get("newco").client == "newco"
    result = ingest_file(app, DEMO, "newco")  # the next file of the client is read with it
    assert result.status in ("completed", "completed_with_errors") and result.rows >= 12
    assert re.search(r"newco</a></td>\s*<td>newco.yaml</td><td>geladen", c.get("/operator/mappings").text)
    assert "web.mapping_installed login=olga client=newco file=newco.yaml" in caplog.text
    for secret in ("Müller", "Becker", "Mahnliste"):
        assert secret not in caplog.text and secret not in str(c.cookies.get(SESSION_COOKIE))


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml", "not_a_spreadsheet.xlsx", "empty.csv"])
def test_hostile_samples_are_refused_with_a_clear_error(console: Console, name: str) -> None:
    c = console.client("olga")
    token = console.csrf(c, "/operator/mappings/demo")
    r = c.post("/operator/mappings/demo/sample", data={"csrf": token},
               files={"file": (name, (HOSTILE / name).read_bytes(), "application/octet-stream")})
    page = c.get(r.headers["location"]).text
    assert "Die Beispieldatei kann nicht gelesen werden" in page, page
    assert "/etc/passwd" not in page and "root:" not in page


def test_preview_needs_a_sample_of_this_client_and_clients_get_404(console: Console) -> None:
    c = console.client("olga")
    token = console.csrf(c, "/operator/mappings/other")
    text = (ROOT / "mappings" / "demo.yaml").read_text(encoding="utf-8")
    r = c.post("/operator/mappings/other", data={"csrf": token, "mapping": text, "do": "preview"})
    assert "Bitte zuerst eine Beispieldatei hochladen" in r.text
    assert "Dieselbe Datei gilt auch für: demo" in r.text  # other and demo share demo.yaml
    anna = console.client("anna")
    anna_token = console.csrf(anna, "/claims")
    for path in ("/operator/mappings", "/operator/mappings/demo"):
        assert anna.get(path).status_code == 404
    for path in ("/operator/mappings/demo", "/operator/mappings/demo/sample"):
        assert anna.post(path, data={"csrf": anna_token, "mapping": text, "do": "install"},
                         files={"file": ("x.csv", b"a;b\n1;2\n", "text/csv")}).status_code == 404
    assert c.get("/operator/mappings/nobody").status_code == 404
    folder = console.app.config.var_dir / "web-mapping-samples"
    before = set(folder.iterdir()) if folder.exists() else set()
    r = c.post("/operator/mappings/other/sample", data={"csrf": token},
               files={"file": ("sample.csv", DEMO.read_bytes(), "text/csv")})
    assert 'value="preview" disabled' not in r.text
    (kept,) = set(folder.iterdir()) - before
    os.utime(kept, (time.time() - 25 * 3600,) * 2)  # a day and an hour old
    r = c.post("/operator/mappings/other", data={"csrf": token, "mapping": text, "do": "preview"})
    assert "Bitte zuerst eine Beispieldatei hochladen" in r.text  # usable for a day only, then deleted
    assert not kept.exists()



def test_a_mapping_too_long_for_the_form_is_refused_not_cut(console: Console) -> None:
    c = console.client("olga")
    token = console.csrf(c, "/operator/mappings/demo")
    before = (console.app.config.mappings_dir / "demo.yaml").read_text(encoding="utf-8")
    text = before + "#" + "x" * (61_000 - len(before))  # under the form's 64 KiB per field, over the page's limit
    r = c.post("/operator/mappings/demo", data={"csrf": token, "mapping": text, "do": "install"})
    assert "länger als 60000 Zeichen" in r.text
    r = c.post("/operator/mappings/demo", data={"csrf": token, "mapping": before + "#" * 70_000, "do": "install"})
    assert r.status_code == 400  # the form parser refuses a field over 64 KiB before the page sees it
    assert (console.app.config.mappings_dir / "demo.yaml").read_text(encoding="utf-8") == before


@pytest.mark.parametrize("sample", ["shop/input.xml", "autohaus/input.xlsx"])
def test_xml_and_spreadsheet_samples_are_drafted_and_the_draft_checks(console: Console, sample: str) -> None:
    c = console.client("olga")
    token = console.csrf(c, "/operator/mappings/demo")
    path = ROOT / "tests" / "fixtures" / sample
    r = c.post("/operator/mappings/demo/sample", data={"csrf": token},
               files={"file": (path.name, path.read_bytes(), "application/octet-stream")})
    assert "Entwurf aus der Beispieldatei" in r.text, r.text
    draft = _textarea(r.text)
    assert f'type: "{path.suffix[1:]}"' in draft
    ok = c.post("/operator/mappings/demo", data={"csrf": token, "mapping": draft, "do": "check"})
    assert 'id="check-ok"' in ok.text
    pre = c.post("/operator/mappings/demo", data={"csrf": token, "mapping": draft, "do": "preview"})
    assert re.search(r'<p id="preview-counts">angenommen: \d+', pre.text)
