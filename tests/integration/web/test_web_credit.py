"""The console's credit check: the form, the result page with the traffic light and each bureau's reasons
(German and English), refusals at the fields, only submit users of the client itself; over the loopback
bureau simulators."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from adapters.bureaus.simulators.book import BureauBook
from adapters.bureaus.simulators.http_sim import HttpBureauSimulator
from adapters.bureaus.simulators.soap_sim import SoapBureauSimulator
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.entrypoints.web.app import build_web_app
from gateway.services import credit
from gateway.services.keys import init_keys
from tests.conftest import PG_URL, _pg_schema_url, write_config
from tests.integration.test_credit import credit_config
from tests.integration.web.conftest import Console, web_config

FORM = {"interest": "contract_initiation", "kind": "consumer", "first_name": "Hans", "last_name": "Hart",
        "birth_date": "1955-07-08", "street": "Ringstr.", "house_number": "3", "postal_code": "04109",
        "city": "Leipzig", "country": "DE"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    base: Path = tmp_path_factory.mktemp("webcredit")
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("GATEWAY_TEST_PG_URL not set: PostgreSQL run skipped (CI sets it)")
    urls = iter([f"sqlite:///{base / 'var' / 'gateway.db'}"]) if request.param == "sqlite" else _pg_schema_url()
    sims = {"json": HttpBureauSimulator(BureauBook()).start(), "soap": SoapBureauSimulator(BureauBook()).start(),
            "third": HttpBureauSimulator(BureauBook()).start()}
    cfg = credit_config(sims)
    cfg["clients"]["demo"]["credit"]["bureaus"] = ["json", "soap"]
    path = write_config(base, next(urls), clients=cfg["clients"], bureaus=cfg["bureaus"], routing=[],
                        web=web_config())
    init_keys(load_config(path))
    app: App = build_app(path, migrate=True)
    try:
        yield Console(app, build_web_app(app))
    finally:
        app.close()
        for sim in sims.values():
            sim.stop()
        for _ in urls:
            pass


def test_form_to_result_page_with_the_light_and_reasons(console: Console, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = console.client("anna")
    page = c.get("/credit")
    assert page.status_code == 200 and 'name="interest"' in page.text and "Vertragsanbahnung" in page.text
    assert 'name="viewport"' in page.text  # usable on a phone: the base layout's viewport
    r = c.post("/credit", data={"csrf": console.csrf(c, "/credit"), **FORM})
    assert r.status_code == 303, r.text
    check_id = int(r.headers["location"].rsplit("/", 1)[1])
    result = c.get(f"/credit/{check_id}")
    assert result.status_code == 200
    assert 'data-colour="red"' in result.text and "Rot: harte Negativmerkmale" in result.text
    assert re.search(r'data-bureau="soap">.*?Zahlungsausfall', result.text, re.S)
    assert "hartes Negativmerkmal" in result.text and "Hans Hart" in result.text
    english = c.get(f"/credit/{check_id}?lang=en")
    assert "Red: hard negative entries" in english.text and "payment default" in english.text
    assert credit.audit_log(console.app, "demo")[-1]["requested_by"] == "anna"
    assert credit.audit_log(console.app, "demo")[-1]["channel"] == "web"
    for value in ("Hart", "1955-07-08", "Ringstr"):
        assert value not in caplog.text


def test_missing_fields_are_marked_and_nothing_is_asked(console: Console) -> None:
    c = console.client("anna")
    before = len(credit.audit_log(console.app, "demo"))
    r = c.post("/credit", data={"csrf": console.csrf(c, "/credit"), **FORM, "birth_date": "", "city": ""})
    assert r.status_code == 422 and "Bitte die markierten Felder" in r.text
    assert re.search(r'name="birth_date"[^>]*aria-invalid="true"', r.text)
    assert len(credit.audit_log(console.app, "demo")) == before


def test_only_the_client_s_own_submit_users(console: Console) -> None:
    anna = console.client("anna")
    r = anna.post("/credit", data={"csrf": console.csrf(anna, "/credit"), **FORM, "first_name": "Erika",
                                   "last_name": "Mustermann"})
    check_id = int(r.headers["location"].rsplit("/", 1)[1])
    assert 'data-colour="green"' in anna.get(f"/credit/{check_id}").text
    assert console.client("ben").get(f"/credit/{check_id}").status_code == 404  # another client's check
    assert console.client("vera").get(f"/credit/{check_id}").status_code == 200  # read users may read
    assert console.client("vera").get("/credit").status_code == 403  # but not ask: a paid query
    assert console.client("olga").get("/credit").status_code == 404  # operators have no client
    assert anna.get("/credit/999999").status_code == 404 and anna.get("/credit/x").status_code == 404


def test_claim_panel_lists_the_debtor_s_checks(console: Console) -> None:
    from gateway.entrypoints.web.pages import make_templates
    from gateway.entrypoints.web.texts import translator
    checks = credit.checks_for_claim(console.app, "demo", 0)  # no such claim: an empty panel
    panel = make_templates().env.get_template("credit_claim_panel.html")
    assert "Keine Bonitätsprüfung" in panel.render(t=translator("de"), credit_checks=checks)
    summary = credit.CheckSummary(check_id=7, created_at=datetime(2026, 11, 30, 8, 0), colour="yellow",
                                  incomplete=True, interest="claim_collection", requested_by="anna", cached=False)
    html = panel.render(t=translator("en"), credit_checks=[summary])
    assert 'href="/credit/7"' in html and "Claim collection" in html and "incomplete" in html


def test_claim_page_shows_the_debtor_s_checks_of_its_own_client_only(console: Console) -> None:
    import msgspec

    from gateway.services import submit
    from tests.factories import make_claim
    from tests.integration.test_credit import person
    app = console.app
    debtor = msgspec.structs.replace(make_claim().debtor, first_name="Vera", last_name="Vollstreckt")
    ids = {}
    for client in ("demo", "other"):
        claim = msgspec.structs.replace(make_claim("R-PANEL"), client_id=client, debtor=debtor)
        ids[client] = submit.submit_claims(app, client, [submit.Draft(reference="R-PANEL", claim=claim)]
                                           ).results[0].claim_id
    mine = credit.check_credit(app, "demo", person("Vera", "Vollstreckt"), interest="claim_collection",
                               user="anna", channel="web")
    theirs = credit.check_credit(app, "other", person("Vera", "Vollstreckt"), interest="contract_initiation",
                                 user="ben", channel="web")
    assert mine.colour == "red"
    page = console.client("anna").get(f"/claims/{ids['demo']}")
    assert page.status_code == 200
    panel = page.text.split('id="credit-checks"', 1)[1].split("</section>", 1)[0]
    assert f'data-check="{mine.check_id}"' in panel and "credit-dot credit-red" in panel
    assert f'href="/credit/{mine.check_id}"' in panel and "anna" in panel
    assert f'data-check="{theirs.check_id}"' not in page.text and "ben" not in panel  # another client's check
    other_page = console.client("ben").get(f"/claims/{ids['other']}")
    assert f'data-check="{theirs.check_id}"' in other_page.text
    assert f'data-check="{mine.check_id}"' not in other_page.text
    assert console.client("ben").get(f"/claims/{ids['demo']}").status_code == 404
    # a claim of a debtor nobody checked shows the empty panel
    plain = msgspec.structs.replace(make_claim("R-NOCHECK"), client_id="demo",
                                    debtor=msgspec.structs.replace(debtor, last_name="Ungeprüft"))
    cid = submit.submit_claims(app, "demo", [submit.Draft(reference="R-NOCHECK", claim=plain)]).results[0].claim_id
    empty = console.client("anna").get(f"/claims/{cid}").text
    assert 'id="credit-checks"' in empty and "data-check=" not in empty
