"""A client's claims in the console: list (sort, filter, search, unread, pages), one claim, its actions."""

from __future__ import annotations

import re
from datetime import date

import pytest

from gateway.entrypoints.web import routes_claims
from gateway.services.claim_queries import get_claim
from tests.integration.web.conftest import Console, claim_ids


def refs(html: str) -> list[str]:
    return re.findall(r'<a href="/claims/\d+">([^<]+)</a>', html)


def test_claims_list_sorts_filters_searches_and_pages(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    c = console.client("anna")
    page = c.get("/claims")
    assert page.status_code == 200
    assert len(refs(page.text)) == 8 and "RE-2025-0001" in page.text
    assert 'class="st-held' in page.text and 'class="st-handed_over' in page.text  # coloured by state
    asc = refs(c.get("/claims?sort=reference&dir=asc").text)
    assert asc == sorted(asc) and refs(c.get("/claims?sort=reference&dir=desc").text) == sorted(asc, reverse=True)
    held = c.get("/claims?state=held").text
    assert refs(held) == ["RE-2025-0004"] and "Warum?" in held  # the red marker leads to the reason
    assert c.get("/claims?state=no_such_state&sort=nonsense").status_code == 200  # ignored, not an error
    search = c.post("/claims/search", data={"csrf": console.csrf(c, "/claims"), "q": "RE-2025-0003"})
    assert search.headers["location"] == "/claims"  # the search text never goes into a URL
    assert refs(c.get("/claims").text) == ["RE-2025-0003"]
    c.post("/claims/search", data={"csrf": console.csrf(c, "/claims"), "q": ""})
    monkeypatch.setattr(routes_claims, "PAGE_SIZE", 3)
    first, second, last = (refs(c.get(f"/claims?sort=reference&dir=asc&page={n}").text) for n in (0, 1, 2))
    assert first + second + last == asc and len(first) == 3 and len(last) == 2
    assert "3 von 8" in c.get("/claims?page=0").text


def test_unread_claims_are_bold_until_opened(console: Console) -> None:
    c = console.client("anna")
    cid = claim_ids(console.app, "demo")["RE-2025-0002"]
    row = re.search(rf'<tr class="([^"]*)">\s*<td><a href="/claims/{cid}">', c.get("/claims").text)
    assert row and "unread" in row.group(1)
    assert c.get(f"/claims/{cid}").status_code == 200
    row = re.search(rf'<tr class="([^"]*)">\s*<td><a href="/claims/{cid}">', c.get("/claims").text)
    assert row and "unread" not in row.group(1)


def test_claim_page_shows_data_account_history_and_why_a_minor_is_held(console: Console) -> None:
    c = console.client("anna")
    cid = claim_ids(console.app, "demo")["RE-2025-0004"]
    page = c.get(f"/claims/{cid}").text
    assert "Lukas Becker" in page and "05.09.2012" in page  # debtor data decrypted for its own client
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    assert title and "Becker" not in title.group(1) and "RE-2025-0004" in title.group(1)
    assert "Warum nicht übergeben?" in page and "debtor_minor" in page and "Vertreter" not in title.group(1)
    assert "Forderungskonto" in page and "49,99 EUR" in page
    assert "Verlauf" in page and "zurückgehalten" in page


def test_a_payment_on_a_claim_the_agency_does_not_have_yet_goes_with_the_handover(console: Console) -> None:
    """Before test_actions_message_payment_cancel, which cancels the held claim."""
    c = console.client("anna")
    ids = claim_ids(console.app, "demo")
    held, delivered = ids["RE-2025-0004"], ids["RE-2025-0003"]
    token = console.csrf(c, f"/claims/{held}")
    c.post(f"/claims/{held}/payment", data={"csrf": token, "amount": "9,99", "date": date.today().isoformat()})
    page = c.get(f"/claims/{held}").text
    assert "Zahlung gemeldet. Sie geht mit der Übergabe der Forderung an das Inkassobüro." in page
    c.post(f"/claims/{delivered}/payment", data={"csrf": token, "amount": "1", "date": date.today().isoformat()})
    page = c.get(f"/claims/{delivered}").text  # the agency has it: the request goes at once
    assert "Zahlung gemeldet." in page and "Sie geht mit der Übergabe" not in page


def test_a_payment_that_leaves_nothing_open_before_the_handover_closes_the_claim(console: Console) -> None:
    """Client other's held claim (no other test of this module touches it) paid in full: closed, and said so."""
    c = console.client("ben")
    held = claim_ids(console.app, "other")["RE-2025-0004"]
    token = console.csrf(c, f"/claims/{held}")
    c.post(f"/claims/{held}/payment", data={"csrf": token, "amount": "52,49", "date": date.today().isoformat()})
    page = c.get(f"/claims/{held}").text
    assert "Die Forderung ist als bezahlt abgeschlossen und wird nicht an das Inkassobüro übergeben." in page
    assert get_claim(console.app, "other", held).state == "closed_paid"
    assert f'action="/claims/{held}/payment"' not in page  # final: no actions


def test_actions_message_payment_cancel(console: Console) -> None:
    c = console.client("anna")
    ids = claim_ids(console.app, "demo")
    cid = ids["RE-2025-0001"]
    token = console.csrf(c, f"/claims/{cid}")
    r = c.post(f"/claims/{cid}/message", data={"csrf": token, "text": "Bitte Ratenzahlung anbieten"})
    assert r.headers["location"] == f"/claims/{cid}"
    page = c.get(f"/claims/{cid}").text
    assert "Nachricht gesendet" in page and "Bitte Ratenzahlung anbieten" in page
    r = c.post(f"/claims/{cid}/payment", data={"csrf": token, "amount": "100,50", "date": date.today().isoformat()})
    page = c.get(f"/claims/{cid}").text
    assert "Zahlung gemeldet" in page and "100,50 EUR" in page
    too_much = c.post(f"/claims/{cid}/payment", data={"csrf": token, "amount": "99999", "date": "2025-01-01"})
    assert too_much.status_code == 303 and "Nicht möglich" in c.get(f"/claims/{cid}").text
    held = ids["RE-2025-0004"]
    c.post(f"/claims/{held}/message", data={"csrf": token, "text": "Nur zur Akte"})
    page = c.get(f"/claims/{held}").text  # a held claim's message is kept here, not sent: the note says so
    assert "Nachricht gespeichert" in page and "Nachricht gesendet" not in page and "Nur zur Akte" in page
    c.post(f"/claims/{held}/cancel", data={"csrf": token, "reason": "erledigt"})
    assert get_claim(console.app, "demo", held).state == "cancelled_by_client"
    page = c.get(f"/claims/{held}").text
    assert "Storno erfasst" in page and 'action="/claims/%d/cancel"' % held not in page  # final: no actions


def test_read_only_login_sees_but_cannot_act(console: Console) -> None:
    c = console.client("vera")
    cid = claim_ids(console.app, "demo")["RE-2025-0010"]
    page = c.get(f"/claims/{cid}").text
    assert "nur lesen" in page and "/cancel" not in page
    r = c.post(f"/claims/{cid}/cancel", data={"csrf": console.csrf(c, "/claims")})
    assert r.status_code == 403
    assert get_claim(console.app, "demo", cid).state == "handed_over"
    assert c.get("/upload").status_code == 403


def test_an_action_the_partner_does_not_take_is_not_offered(console: Console,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console.app.config.partners["demo-agency"], "capabilities", ["deliver", "status_pull"])
    c = console.client("anna")
    cid = claim_ids(console.app, "demo")["RE-2025-0011"]
    page = c.get(f"/claims/{cid}").text
    assert "/cancel" not in page and "/payment" not in page and "/message" not in page
    assert "keine Aktionen" in page
    r = c.post(f"/claims/{cid}/cancel", data={"csrf": console.csrf(c, "/claims")})
    assert "Nicht möglich" in c.get(r.headers["location"]).text  # refused by the use case as well
    assert get_claim(console.app, "demo", cid).state == "handed_over"
