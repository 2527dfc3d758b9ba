"""Collection runs (list, detail, release of held claims), file upload with its ack table, operator pages."""

from __future__ import annotations

import re

from gateway.services.claim_queries import get_claim
from gateway.services.console import submissions
from gateway.store import outbox as outbox_store
from gateway.store.db import write_tx
from tests.integration.web.conftest import DEMO, Console, claim_ids


def run_ref(console: Console, client: str) -> str:
    return str(submissions(console.app, client, limit=1, offset=0).rows[0]["reference"])


def test_runs_list_and_detail_and_release_leaves_the_minor_out_by_default(console: Console) -> None:
    c = console.client("ben")
    ref = run_ref(console, "other")
    assert ref in c.get("/runs").text
    page = c.get(f"/runs/{ref}").text
    minor = claim_ids(console.app, "other")["RE-2025-0004"]
    box = re.search(rf'<input type="checkbox" name="claim" value="{minor}"[^>]*>', page)
    assert box and "checked" not in box.group(0) and "minderjährig" in page
    token = console.csrf(c, f"/runs/{ref}")
    assert "Keine Forderung" in c.get(c.post(f"/runs/{ref}/release", data={"csrf": token}).headers["location"]).text
    r = c.post(f"/runs/{ref}/release", data={"csrf": token, "claim": [str(minor)]})
    assert "1 Forderung(en) freigegeben" in c.get(r.headers["location"]).text
    assert get_claim(console.app, "other", minor).state == "queued"


def test_upload_shows_the_ack_as_a_table_and_a_second_upload_as_duplicate(console: Console) -> None:
    c = console.client("anna")
    token = console.csrf(c, "/upload")
    data = DEMO.read_bytes().replace(b"RE-2025-", b"WEB-2025-")
    r = c.post("/upload", data={"csrf": token}, files={"file": ("../../etc/web demo.csv", data, "text/csv")})
    assert r.status_code == 200, r.text
    assert "Ergebnis: web demo.csv" in r.text and "8 angenommen" not in r.text
    assert re.search(r"\d+ Zeilen: 7 angenommen, 1 zurückgehalten, \d+ abgelehnt", r.text)
    assert 'class="out-rejected"' in r.text and 'class="out-held"' in r.text and "Betrag" in r.text  # its columns
    again = c.post("/upload", data={"csrf": token}, files={"file": ("again.csv", data, "text/csv")})
    assert "bereits als" in again.text
    assert c.post("/upload", data={"csrf": token}).headers["location"] == "/upload"
    assert not any((console.app.config.var_dir / "web-uploads").iterdir())  # the plain copy is gone


def test_operator_sees_every_client_and_retries_a_dead_letter(console: Console) -> None:
    app = console.app
    with write_tx(app.engine) as conn:
        dead = outbox_store.enqueue_dead(conn, key="test:dead", client_id="other", partner_id="demo-agency",
                                         operation="deliver_batch", payload={"claim_ids": []}, error="partner said no")
    c = console.client("olga")
    runs = c.get("/operator/runs").text
    assert run_ref(console, "demo") in runs and run_ref(console, "other") in runs
    assert c.get(f"/operator/runs/{run_ref(console, 'other')}").status_code == 200
    claims = c.get("/operator/claims").text
    assert ">demo<" in claims and ">other<" in claims
    cid = claim_ids(app, "other")["RE-2025-0001"]
    page = c.get(f"/operator/claims/{cid}").text
    assert "RE-2025-0001" in page and "/cancel" not in page
    outbox = c.get("/operator/outbox").text
    assert "partner said no" in outbox
    token = console.csrf(c, "/operator/outbox")
    r = c.post(f"/operator/outbox/{dead}/retry", data={"csrf": token})
    assert "wird erneut gesendet" in c.get(r.headers["location"]).text
    assert "partner said no" not in c.get("/operator/outbox").text  # no longer a dead letter
