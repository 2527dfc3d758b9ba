"""The console attacked: what a hostile client user or an outsider tried, each a defect once.

Every test here failed on the code before its fix.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select, update

from gateway.entrypoints.web.app import SESSION_COOKIE, build_web_app
from gateway.entrypoints.web.users import UserBook
from gateway.services.claim_queries import get_claim
from gateway.services.dispatch import Dispatcher
from gateway.store.schema import outbox, submission_findings, web_sessions
from tests.integration.web.conftest import DEMO, PASSWORDS, Console, claim_ids
from tests.integration.web.test_web_runs_operator import run_ref
from tests.integration.web.test_web_sessions import cookie_session


def test_a_search_kept_for_the_session_is_not_in_the_database_in_plain(console: Console) -> None:
    """A search may be a debtor's name: kept on the server for the session, it is encrypted like the claims'
    names (a database copy or backup without the keys must not hold it in plain)."""
    c = console.client("anna")
    token = console.csrf(c, "/claims")
    run = run_ref(console, "demo")
    assert c.post("/claims/search", data={"csrf": token, "q": "Jürgen Müller"}).status_code == 303
    assert c.post(f"/runs/{run}/search", data={"csrf": token, "q": "Becker"}).status_code == 303
    key = hashlib.sha256(str(cookie_session(c)["sid"]).encode()).hexdigest()
    with console.app.engine.connect() as conn:
        kept = conn.execute(select(web_sessions.c.search).where(web_sessions.c.token_hash == key)).scalar()
    assert kept
    for planted in ("Müller", "M\\u00fcller", "Jürgen", "J\\u00fcrgen", "Becker"):
        assert planted not in kept, planted
    listed = c.get("/claims").text  # the search still works: the name's claim alone
    assert "RE-2025-0001" in listed and "RE-2025-0002" not in listed
    assert "RE-2025-0004" in c.get(f"/runs/{run}").text  # Lukas Becker's claim of the run
    assert c.post("/claims/search", data={"csrf": token, "q": ""}).status_code == 303
    assert "RE-2025-0002" in c.get("/claims").text


def _notes(page: str) -> list[str]:
    return re.findall(r'class="note[^"]*"[^>]*>([^<]*)<', page)


def test_an_absurd_payment_is_refused_not_booked_nor_a_crash(console: Console,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A payment is bounded like a claim's amounts (under a billion): 10^15 was booked as an overpayment and
    forwarded to the agency, 10^30 ended in a 500 (the minor units overflow the database's integer)."""
    c = console.client("anna")
    token = console.csrf(c, "/claims")
    cid = claim_ids(console.app, "demo")["RE-2025-0011"]
    before = get_claim(console.app, "demo", cid).account.paid_direct
    for amount in ("1000000000", "1E+15", "1E+30", "99999999999999999999999"):
        r = c.post(f"/claims/{cid}/payment", data={"csrf": token, "amount": amount, "date": "2025-03-01",
                                                    "overpayment": "1"})
        assert r.status_code == 303, (amount, r.status_code)
        assert any("Nicht möglich" in n for n in _notes(c.get(f"/claims/{cid}").text)), amount
    assert get_claim(console.app, "demo", cid).account.paid_direct == before
    assert "web.error" not in caplog.text


def test_an_amount_that_is_not_a_number_is_a_finding_not_a_crash(console: Console,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """"NaN" as the hand-over form's principal or a fee: a finding at its field (it was a 500 and an ERROR line:
    comparing a NaN Decimal raises)."""
    c = console.client("anna")
    token = console.csrf(c, "/claims/new")
    base = {"csrf": token, "amount": "100,00", "kind": "consumer", "last_name": "Nanfeld", "street": "Weg",
            "house_number": "1", "postal_code": "10115", "city": "Berlin", "country": "DE"}
    for n, extra in enumerate(({"amount": "NaN"}, {"amount": "sNaN"}, {"fee_dunning": "NaN"},
                               {"amount": "Infinity", "fee_other": "-Infinity"})):
        r = c.post("/claims/new", data={**base, "reference": f"NAN-{n}", **extra})
        assert r.status_code == 422, (extra, r.status_code)
        assert 'class="field-error"' in r.text
    assert "web.error" not in caplog.text


def test_an_upload_cut_off_by_a_crash_leaves_no_plain_copy_once_the_console_starts_again(
        console: Console) -> None:
    """An upload is ingested from a copy under var/web-uploads, deleted when the request ends; a process killed
    meanwhile never deleted it, and the client's file (names, IBANs, in plain) stayed there for good."""
    spool = console.app.config.var_dir / "web-uploads"
    left = spool / "tmpkilled"  # what mkdtemp made for the upload the crash cut off
    left.mkdir(parents=True)
    (left / "batch.csv").write_text("RE-1;Jürgen;Müller;DE89370400440532013000\n", encoding="utf-8")
    build_web_app(console.app, UserBook(console.app.config))
    assert not left.exists() and spool.is_dir()
    c = console.client("anna")  # and uploads still work afterwards
    r = c.post("/upload", data={"csrf": console.csrf(c, "/upload")},
               files={"file": ("demo.csv", DEMO.read_bytes(), "text/csv")})
    assert r.status_code == 200 and list(spool.iterdir()) == []


def test_a_large_form_is_taken_only_from_a_login_that_may_upload(console: Console) -> None:
    """A form is parsed (and held in memory) before its CSRF token can be checked: an outsider with the login
    page's token sent web.max_upload_bytes (50 MB) to /login or /upload and the server parsed all of it (six such
    requests, held open by a last byte not sent, took serve from 106 to 391 MB). Forms without files, and file
    forms of anyone but a login that may submit, are refused over 1 MiB before a byte is read."""
    big = "A" * 60_000
    fields = {"f": [big] * 20}  # 1.2 MB of form fields
    anonymous = console.client()
    token = console.csrf(anonymous, "/login")
    assert anonymous.post("/login", data={"csrf": token, "login": "anna", **fields}).status_code == 413
    blob = b"%PDF-1.4\n" + b"0" * 1_200_000
    for c in (anonymous, console.client("vera")):  # an outsider, a read-only login
        t = console.csrf(c, "/login" if c is anonymous else "/claims")
        r = c.post("/upload", data={"csrf": t}, files={"file": ("big.csv", blob, "text/csv")})
        assert r.status_code == 413, r.status_code
        assert c.post("/claims/new", data={"csrf": t}, files={"document": ("a.pdf", blob, "application/pdf")}) \
            .status_code == 413
    anna = console.client("anna")
    t = console.csrf(anna, "/claims/new")
    r = anna.post("/claims/new", data={"csrf": t, "reference": "BIG-1", "amount": "10", "last_name": "Groß"},
                  files={"document": ("a.pdf", blob, "application/pdf")})
    assert r.status_code in (303, 422), r.status_code  # taken: the form's answer, not 413
    assert anna.post("/claims/search", data={"csrf": t, **fields}).status_code == 413
    assert anna.post("/claims/search", data={"csrf": t, "q": "x" * 500}).status_code == 303


def test_a_number_too_large_for_the_database_is_not_found_not_a_500(console: Console,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Ids and page numbers past 64 bits went to the database, which refused them: a 500 and an ERROR line per
    request (OverflowError on SQLite, bigint out of range on PostgreSQL), any login could fill the log with them."""
    big = "9" * 23
    c = console.client("anna")
    token = console.csrf(c, "/claims")
    cid = claim_ids(console.app, "demo")["RE-2025-0012"]
    for path in (f"/claims/{big}", f"/claims/{cid}/documents/{big}", f"/credit/{big}", "/claims/9223372036854775808"):
        assert c.get(path).status_code == 404, path
    for action in ("cancel", "message", "payment", "refresh", "monitoring", "labels"):
        assert c.post(f"/claims/{big}/{action}", data={"csrf": token, "text": "x"}).status_code == 404, action
    for path in (f"/claims?page={big}", f"/runs?page={big}", "/claims?page=184467440737095516"):
        assert c.get(path).status_code == 200, path
    op = console.client("olga")
    assert op.get(f"/operator/claims/{big}").status_code == 404
    for path in (f"/operator/claims?page={big}", f"/operator/outbox?page={big}", f"/operator/runs?page={big}"):
        assert op.get(path).status_code == 200, path
    assert op.post(f"/operator/outbox/{big}/retry", data={"csrf": console.csrf(op, "/operator/outbox")}) \
        .status_code == 404
    assert "web.error" not in caplog.text


def test_a_rejected_hand_over_stores_findings_without_the_values_sent(console: Console) -> None:
    """The findings of a hand-over (SOAP's too: one translation) are stored with the run and shown to operators,
    in plain: they quoted a document's file name ("Rechnung <debtor>.pdf"), its media type and any value msgspec
    refused ("Invalid enum value '<text>'"). The client still sees its own value at the field."""
    c = console.client("anna")
    token = console.csrf(c, "/claims/new")
    base = {"csrf": token, "amount": "10", "last_name": "Weg", "street": "W", "house_number": "1",
            "postal_code": "10115", "city": "Berlin", "country": "DE"}
    r = c.post("/claims/new", data={**base, "reference": "PII-1"},
               files={"document": ("Rechnung Zacharias Quxbauer.pdf", b"", "application/pdf")})
    assert r.status_code == 422 and "Rechnung Zacharias Quxbauer.pdf" in r.text  # the client's own name, shown
    c.post("/claims/new", data={**base, "reference": "PII-2"}, files={"document": ("a.pdf", b"%PDF", "text/Quxtype")})
    c.post("/claims/new", data={**base, "reference": "PII-3", "kind": "Zacharias Quxkind"})
    with console.app.engine.connect() as conn:
        stored = [m for (m,) in conn.execute(select(submission_findings.c.message))]
    assert any(m == "document 1 is empty" for m in stored)
    for planted in ("Quxbauer", "Quxtype", "Quxkind"):
        assert not [m for m in stored if planted in m], planted


def test_fields_that_take_debtor_data_are_not_kept_in_the_browsers_form_history(console: Console) -> None:
    """Chromium kept the claims search ("Zacharias Quxbauer") and the hand-over form's names and street in its
    profile's autofill table and offered them again, to whoever used that browser next
    (tests/e2e/test_web_autofill.py reads the profile). Fields of debtor data say autocomplete="off"."""
    c = console.client("anna")
    cid = claim_ids(console.app, "demo")["RE-2025-0012"]
    run = run_ref(console, "demo")
    pages = {"/claims": {"q"}, f"/runs/{run}": {"q"}, f"/claims/{cid}": {"reason"},
             "/claims/new": {"reference", "invoice_number", "first_name", "last_name", "company", "birth_date",
                             "street", "house_number", "postal_code", "city", "email", "iban", "bic"}}
    for path, names in pages.items():
        page = c.get(path).text
        for name in names:
            tag = re.search(rf'<input name="{name}"[^>]*>', page)
            assert tag and 'autocomplete="off"' in tag.group(0), (path, name)


def test_characters_xml_cannot_carry_do_not_get_through_the_forms_to_a_dead_letter(console: Console) -> None:
    """A form post can hold control characters no keyboard types; every partner's batch is XML. A hand-over with
    one in the debtor's name (or a message with one) was accepted, then failed at delivery: the claim "failed", a
    dead letter for the operator. The console's forms drop them, as a file's mapping does (SOAP cannot carry them)."""
    c = console.client("anna")
    token = console.csrf(c, "/claims/new")
    r = c.post("/claims/new", data={"csrf": token, "reference": "CTL-1\x01", "amount": "10", "last_name": "Mül\x0bler",
                                    "street": "Weg\x00", "house_number": "1", "postal_code": "10115", "city": "Berlin",
                                    "country": "DE"},
               files={"document": ("Rech\x07nung.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")})
    assert r.status_code == 303, r.text
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    Dispatcher(console.app, owner="t").drain()
    claim = get_claim(console.app, "demo", cid)
    assert claim.state == "handed_over" and claim.claim.creditor_reference == "CTL-1"
    assert claim.claim.debtor.last_name == "Müller"
    assert c.post(f"/claims/{cid}/message", data={"csrf": token, "text": "Bitte\x1b[31m anrufen"}).status_code == 303
    Dispatcher(console.app, owner="t").drain()
    with console.app.engine.connect() as conn:
        assert conn.execute(select(outbox.c.id).where(outbox.c.status == "dead")).first() is None


def test_a_login_over_a_session_ends_that_session_on_the_server(console: Console) -> None:
    """Logging in as another user in the same browser replaced the cookie, but the earlier session stayed valid on
    the server: a copy of its cookie (another tab of a shared PC, one taken before) still read anna's claims."""
    c = console.client("anna")
    copy = console.client()
    copy.cookies.set(SESSION_COOKIE, c.cookies[SESSION_COOKIE])
    assert copy.get("/claims").status_code == 200
    assert console.login(c, "ben", PASSWORDS["ben"]).status_code == 303  # over anna's session, no logout
    assert "RE-2025-0003" in c.get("/claims").text  # ben's list now
    assert copy.get("/claims").status_code == 303  # anna's session is over


def test_a_search_an_earlier_version_kept_in_plain_is_forgotten_when_the_console_starts(console: Console) -> None:
    """The rows of sessions that were open across the upgrade held their searches in plain until they ended."""
    c = console.client("anna")
    token = console.csrf(c, "/claims")
    c.post("/claims/search", data={"csrf": token, "q": "Jürgen Müller"})
    key = hashlib.sha256(str(cookie_session(c)["sid"]).encode()).hexdigest()
    other = console.client("ben")
    other_key = hashlib.sha256(str(cookie_session(other)["sid"]).encode()).hexdigest()
    with console.app.engine.begin() as conn:  # as the version before wrote it
        conn.execute(update(web_sessions).where(web_sessions.c.token_hash == other_key)
                     .values(search='{"q": "Lukas Becker"}'))
    build_web_app(console.app, UserBook(console.app.config))
    with console.app.engine.connect() as conn:
        rows = dict(conn.execute(select(web_sessions.c.token_hash, web_sessions.c.search)
                                 .where(web_sessions.c.token_hash.in_([key, other_key]))).all())
    assert rows[other_key] is None
    assert rows[key] and rows[key].startswith("s1:")  # a sealed one stays


def test_an_upload_whose_spool_cannot_be_made_gives_its_turn_back(console: Console) -> None:
    """The spool folder failing to be made (var/ full, a file in its place) after an upload took its client's turn
    kept the turn for good: that client's uploads then waited and got "busy" until serve restarted, and four such
    failures stopped every client's (from the review)."""
    import shutil

    spool = console.app.config.var_dir / "web-uploads"
    shutil.rmtree(spool, ignore_errors=True)
    spool.write_text("not a folder")
    c = console.client("anna")
    try:
        r = c.post("/upload", data={"csrf": console.csrf(c, "/upload")},
                   files={"file": ("demo.csv", DEMO.read_bytes(), "text/csv")})
        assert r.status_code == 500
    except OSError:
        pass  # the test client may raise the server's error instead of answering 500
    spool.unlink()
    assert console.web.state.upload_slots.clients == set()  # the turn was given back
    r = c.post("/upload", data={"csrf": console.csrf(c, "/upload")},
               files={"file": ("demo.csv", DEMO.read_bytes(), "text/csv")})
    assert r.status_code == 200 and "upload_busy" not in r.text


def test_a_form_refused_for_its_size_or_shape_says_so_not_forbidden(console: Console) -> None:
    """A form over its limit (413) or one the parser refuses (too many fields, a field too long: 400) was answered
    "this action is not allowed", as if the login lacked a right: the page now says what was wrong."""
    anna = console.client("anna")
    t = console.csrf(anna, "/claims")
    big = anna.post("/claims/search", data={"csrf": t, "f": ["A" * 60_000] * 20})
    assert big.status_code == 413
    assert "Das Formular ist zu groß: höchstens 1 MB. Nichts wurde geändert." in big.text
    assert "nicht erlaubt" not in big.text
    many = anna.post("/claims/search", data={"csrf": t, "f": ["x"] * 1001})
    assert many.status_code == 400 and "Das Formular konnte nicht gelesen werden" in many.text
    long = anna.post("/claims/search", files={"csrf": (None, t), "q": (None, "x" * (64 * 1024 + 1))})
    assert long.status_code == 400 and "Das Formular konnte nicht gelesen werden" in long.text


def test_a_large_file_form_is_taken_only_at_the_routes_of_the_login_that_sends_it(console: Console) -> None:
    """The upload limit held for every file form of any login that may submit: an operator's 50 MB to a client's
    /upload or /claims/new, and a client's 50 MB to the operator's mapping sample, were parsed (spooled) in full and
    only then answered 404 by the route. Now each file form takes large bodies only from the logins it is for."""
    blob = b"%PDF-1.4\n" + b"0" * 1_200_000
    olga, anna = console.client("olga"), console.client("anna")
    t = console.csrf(olga, "/operator/runs")
    for path, name in (("/upload", "file"), ("/claims/new", "document")):
        r = olga.post(path, data={"csrf": t}, files={name: ("a.csv", blob, "text/csv")})
        assert r.status_code == 413, (path, r.status_code)
    t = console.csrf(anna, "/claims")
    r = anna.post("/operator/mappings/demo/sample", data={"csrf": t}, files={"file": ("a.csv", blob, "text/csv")})
    assert r.status_code == 413, r.status_code
    # each at its own: taken (the form's answer, not 413)
    t = console.csrf(olga, "/operator/runs")
    sample = olga.post("/operator/mappings/demo/sample", data={"csrf": t}, files={"file": ("a.csv", blob, "text/csv")})
    assert sample.status_code != 413, sample.status_code
