"""Who may see and do what: client A on client B's URLs, clients on operator pages, CSRF on every POST,
and no debtor data in logs or URLs."""

from __future__ import annotations

import logging

import pytest
from starlette.routing import Route

from gateway.services.claim_queries import get_claim
from tests.integration.web.conftest import Console, claim_ids
from tests.integration.web.test_web_runs_operator import run_ref


def test_client_a_on_every_url_of_client_b_gets_404_like_an_unknown_id(console: Console) -> None:
    c = console.client("anna")
    token = console.csrf(c, "/claims")
    foreign = claim_ids(console.app, "other")["RE-2025-0003"]
    run = run_ref(console, "other")
    unknown_claim, unknown_run = 99_999_999, "S00000000-NOPE"
    for claim in (foreign, unknown_claim):
        assert c.get(f"/claims/{claim}").status_code == 404
        assert c.get(f"/claims/{claim}/documents/1").status_code == 404
        for action, data in (("cancel", {}), ("message", {"text": "hallo"}),
                             ("payment", {"amount": "1", "date": "2025-01-01"}), ("refresh", {}),
                             ("monitoring", {}), ("labels", {"add": "x"})):
            r = c.post(f"/claims/{claim}/{action}", data={"csrf": token, **data})
            assert r.status_code == 404, (claim, action)
    for ref in (run, unknown_run):
        assert c.get(f"/runs/{ref}").status_code == 404
        assert c.post(f"/runs/{ref}/release", data={"csrf": token, "claim": [str(foreign)]}).status_code == 404
    assert get_claim(console.app, "other", foreign).state == "handed_over"
    assert "RE-2025-0003" not in c.get(f"/claims/{foreign}").text
    for path in ("/operator/runs", f"/operator/runs/{run}", "/operator/claims", f"/operator/claims/{foreign}",
                 "/operator/outbox", "/operator/partners", "/operator/clients", "/operator/clients/other",
                 "/operator/mappings", "/operator/mappings/other"):
        assert c.get(path).status_code == 404, path
    assert c.post("/operator/outbox/1/retry", data={"csrf": token}).status_code == 404
    op = console.client("olga")
    for path in ("/claims", f"/claims/{foreign}", "/runs", "/upload", "/claims/new", "/claims/export.csv",
                 "/labels"):
        assert op.get(path).status_code == 404, path


def post_routes(console: Console) -> list[str]:
    paths = []
    for route in console.web.routes:
        if isinstance(route, Route) and "POST" in (route.methods or ()):
            paths.append(route.path.replace("{claim_id:id}", str(claim_ids(console.app, "demo")["RE-2025-0012"]))
                         .replace("{ref}", run_ref(console, "demo")).replace("{outbox_id:id}", "1")
                         .replace("{client_id}", "demo"))
    return paths


def test_every_post_without_the_session_token_is_refused(console: Console) -> None:
    paths = post_routes(console)
    assert len(paths) >= 10 and {"/login", "/logout", "/operator/outbox/1/retry", "/operator/clients",
                                 "/operator/clients/demo/password"} <= set(paths)
    cid = claim_ids(console.app, "demo")["RE-2025-0012"]
    for login in ("anna", "olga"):
        c = console.client(login)
        other = console.client("ben")
        foreign_token = console.csrf(other, "/claims")  # a real token, of another session
        for path in paths:
            for data in ({}, {"csrf": ""}, {"csrf": foreign_token}):
                r = c.post(path, data={**data, "text": "x", "reason": "x"})
                assert r.status_code == 403 and "Formular ist abgelaufen" in r.text, (login, path, data)
    assert get_claim(console.app, "demo", cid).state == "handed_over"


def test_no_debtor_data_in_logs_urls_or_titles(console: Console, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = console.client("anna")
    planted = ["Müller", "Becker", "DE89370400440532013000", "j.mueller@example.de"]
    locations = []
    token = console.csrf(c, "/claims")
    locations.append(c.post("/claims/search", data={"csrf": token, "q": "Jürgen Müller"}).headers["location"])
    assert "RE-2025-0001" in c.get("/claims").text  # found by the blind index of the name
    for cid in claim_ids(console.app, "demo").values():
        page = c.get(f"/claims/{cid}")
        title = page.text.split("<title>")[1].split("</title>")[0]
        assert not any(p in title for p in planted)
        locations.append(c.post(f"/claims/{cid}/message", data={"csrf": token, "text": "Becker zahlt"})
                         .headers["location"])
    c.post("/login", data={"csrf": token, "login": "Müller", "password": "DE89370400440532013000"})
    text = caplog.text + " ".join(locations)
    assert "web.claim_action" in caplog.text
    for p in planted:
        assert p not in text, p
