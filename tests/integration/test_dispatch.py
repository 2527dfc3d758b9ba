"""Delivery through the outbox on SQLite and PostgreSQL: receipt, retries, dead letter, lost answers."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.serialization import pkcs7
from lxml import etree

from gateway.bootstrap import App
from gateway.crypto.certs import load_cert, load_private_key
from gateway.crypto.cms import decrypt
from gateway.domain.lifecycle import State
from gateway.services.dispatch import Dispatcher, retry_dead
from gateway.services.ingest import ingest_file
from gateway.services.render import validate_batch
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx, write_tx
from tests.conftest import ROOT
from tests.support import Clock

DEMO = ROOT / "examples" / "demo.csv"


@pytest.fixture
def clock(app: App, monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(app)
    monkeypatch.setattr(app, "now", c)
    monkeypatch.setattr(app, "lease_now", c.leases)
    return c


def partner_dir(app: App) -> Path:
    return app.config.path("var/partners/demo-agency")


def states(app: App) -> dict[int, State]:
    with read_tx(app.engine) as conn:
        ids = [r["id"] for r in claim_store.listing(conn, client_id="demo")]
        return claim_store.current_states(conn, ids)


def test_delivery_renders_signs_encrypts_and_records_receipt(app: App, clock: Clock) -> None:
    ingest_file(app, DEMO, "demo")
    worker = Dispatcher(app, owner="t1")
    assert worker.drain() == 1 and worker.drain() == 0
    [batch] = partner_dir(app).glob("*.p7m")
    keys = app.config.keys_dir / "partners"
    signed = decrypt(batch.read_bytes(), load_cert(keys / "demo-agency.crt"), load_private_key(keys / "demo-agency.key"))
    # The inner SignedData carries the XML; check it without openssl here (the e2e test uses openssl).
    xml = signed[signed.index(b"<?xml"):signed.index(b"</batch>") + len(b"</batch>")]
    assert validate_batch(xml) == []
    assert len(etree.fromstring(xml).findall("{urn:inkasso-gateway:partner-batch:1}claim")) == 7
    assert pkcs7.load_der_pkcs7_certificates(signed)  # the signer's certificate travels with the batch
    s = states(app)
    assert sorted(v.value for v in s.values()).count("handed_over") == 7
    assert [v for v in s.values() if v is not State.HANDED_OVER] == [State.HELD]


def test_partner_down_retries_then_dead_letters_then_operator_retry(app: App, clock: Clock,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    app.config.partners["demo-agency"].options.update(create=False, path="var/partners/not-mounted")
    monkeypatch.setattr(app.config.dispatcher, "max_attempts", 3)
    ingest_file(app, DEMO, "demo")
    worker = Dispatcher(app, owner="t1")
    for attempt in (1, 2, 3, 4):
        assert worker.run_once()
        with read_tx(app.engine) as conn:
            [row] = outbox_store.listing(conn)
        assert row["attempts"] == attempt and "not-mounted" in row["last_error"]
        if attempt == 3:  # max_attempts, but queued only 2 h ago: a partner may be down for hours, not yet dead
            assert row["status"] == "pending"
            clock.advance(app.config.dispatcher.retry_for_seconds)
        else:
            clock.advance(3600)
    assert row["status"] == "dead"  # tried max_attempts times and for retry_for_seconds
    assert not worker.run_once()
    assert sorted(v.value for v in states(app).values()).count("failed") == 7

    worker.close()
    app.config.partners["demo-agency"].options.update(create=True)
    assert retry_dead(app, row["id"]) == 7
    assert Dispatcher(app, owner="t2").drain() == 1
    assert sorted(v.value for v in states(app).values()).count("handed_over") == 7
    with read_tx(app.engine) as conn:
        cid = next(c for c, st in claim_store.current_states(conn, list(states(app))).items()
                   if st is State.HANDED_OVER)
        hist = [(e["from_state"], e["state"], e["actor"]) for e in claim_store.history(conn, cid)]
    assert hist == [("received", "queued", "system"), ("queued", "delivering", "system"),
                    ("delivering", "failed", "system"), ("failed", "queued", "operator"),
                    ("queued", "delivering", "system"), ("delivering", "handed_over", "system")]


def test_an_operator_retry_gives_a_dead_row_the_whole_retry_window_again(app: App, clock: Clock,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A row dead after a day of failures, retried by the operator once the cause is fixed, meets another outage of
    an hour: it is retried through it, as a new row would be, not dead again after max_attempts quick tries."""
    app.config.partners["demo-agency"].options.update(create=False, path="var/partners/not-mounted")
    monkeypatch.setattr(app.config.dispatcher, "max_attempts", 3)
    ingest_file(app, DEMO, "demo")
    worker = Dispatcher(app, owner="t1")
    for _ in range(3):
        assert worker.run_once()
        clock.advance(app.config.dispatcher.retry_for_seconds / 2)
    with read_tx(app.engine) as conn:
        [row] = outbox_store.listing(conn)
    assert row["status"] == "dead" and row["attempts"] == 3
    assert retry_dead(app, row["id"]) == 7  # the partner is still (or again) down: an outage of an hour
    for attempt in (1, 2, 3):
        clock.advance(1200)
        assert worker.run_once()
        with read_tx(app.engine) as conn:
            [row] = outbox_store.listing(conn)
        assert row["attempts"] == attempt and row["status"] == "pending", row
    app.config.partners["demo-agency"].options.update(create=True)  # the partner is back
    clock.advance(3600)
    assert Dispatcher(app, owner="t2").drain() == 1
    assert sorted(v.value for v in states(app).values()).count("handed_over") == 7


def test_the_retry_window_runs_from_the_first_failure_not_from_when_the_row_was_queued(
        app: App, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row that waited a day before its first try (behind its claim's batch through an outage, in a busy lane)
    meets an outage of an hour: it is retried through it, not dead after max_attempts quick tries because it
    was queued long ago. The operator's retry leaves ``created_at`` saying when the work was queued."""
    app.config.partners["demo-agency"].options.update(create=False, path="var/partners/not-mounted")
    monkeypatch.setattr(app.config.dispatcher, "max_attempts", 3)
    ingest_file(app, DEMO, "demo")
    with read_tx(app.engine) as conn:
        [row] = outbox_store.listing(conn)
    queued_at = row["created_at"]
    clock.advance(app.config.dispatcher.retry_for_seconds + 3600)  # a day and an hour before its first try
    worker = Dispatcher(app, owner="t1")
    for attempt in (1, 2, 3, 4):
        assert worker.run_once()
        with read_tx(app.engine) as conn:
            [row] = outbox_store.listing(conn)
        assert row["attempts"] == attempt and row["status"] == "pending", row
        clock.advance(1200)
    clock.advance(app.config.dispatcher.retry_for_seconds)  # now failing for longer than the window
    assert worker.run_once()
    with read_tx(app.engine) as conn:
        [row] = outbox_store.listing(conn)
    assert row["status"] == "dead"
    retry_dead(app, row["id"])
    with read_tx(app.engine) as conn:
        row = outbox_store.get(conn, row["id"])
    assert row["created_at"] == queued_at and row["failing_since"] is None and row["status"] == "pending"


def test_every_dead_row_of_a_partner_is_retried_with_one_command(app: App, config_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """After an outage, or credentials or a certificate mended, the operator sends every dead row of the partner
    again with one command (``outbox retry --dead --partner P``), not one command per row; another partner's
    dead rows stay as they are."""
    from gateway.entrypoints import cli
    app.config.partners["demo-agency"].options.update(create=False, path="var/partners/not-mounted")
    monkeypatch.setattr(app.config.dispatcher, "max_attempts", 1)
    monkeypatch.setattr(app.config.dispatcher, "retry_for_seconds", 0)
    ingest_file(app, DEMO, "demo")
    assert Dispatcher(app, owner="t1").run_once()
    with write_tx(app.engine) as conn:
        other = outbox_store.enqueue_dead(conn, key="cancel:99:1", client_id="demo", partner_id="elsewhere",
                                          operation="cancel", payload={"claim_id": 99}, error="refused")
        [dead] = outbox_store.dead_ids(conn, "demo-agency")
    assert sorted(v.value for v in states(app).values()).count("failed") == 7
    assert cli.main(["--config", str(config_path), "outbox", "retry", "--dead", "--partner", "demo-agency"]) == 0
    assert "1 dead outbox row(s) of partner demo-agency will be delivered again (7 failed claim(s)" in \
        capsys.readouterr().out
    with read_tx(app.engine) as conn:
        assert outbox_store.get(conn, dead)["status"] == "pending"
        assert outbox_store.dead_ids(conn) == [other]
    app.config.partners["demo-agency"].options.update(create=True)
    assert Dispatcher(app, owner="t2").drain() == 1
    assert sorted(v.value for v in states(app).values()).count("handed_over") == 7
    # a row id with --dead, or neither: refused with a line that says what goes with what
    assert cli.main(["--config", str(config_path), "outbox", "retry", "--dead", "3"]) == 2
    assert cli.main(["--config", str(config_path), "outbox", "retry"]) == 2
    assert "--dead for every dead-lettered row" in capsys.readouterr().err
    # a partner's name mistyped: said so, not "0 dead outbox row(s)" as if nothing were dead
    for flag in ("--dead", "--waiting"):
        assert cli.main(["--config", str(config_path), "outbox", "retry", flag, "--partner", "demo-agnecy"]) == 2
        assert "no partner 'demo-agnecy' in the configuration (configured: demo-agency)" in capsys.readouterr().err


def test_lost_answer_after_delivery_does_not_deliver_twice(app: App, clock: Clock,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ingest_file(app, DEMO, "demo")
    crashed = Dispatcher(app, owner="dies")
    monkeypatch.setattr(crashed, "_record", lambda *a: (_ for _ in ()).throw(SystemExit("killed after send")))
    with pytest.raises(SystemExit):
        crashed.run_once()
    assert len(list(partner_dir(app).glob("*.p7m"))) == 1
    other = Dispatcher(app, owner="survivor")
    assert not other.run_once()  # the dead worker's lease still holds
    clock.advance(app.config.dispatcher.lease_seconds + 1)
    assert other.run_once()
    assert len(list(partner_dir(app).glob("*.p7m"))) == 1
    s = states(app)
    assert sorted(v.value for v in s.values()).count("handed_over") == 7
    with read_tx(app.engine) as conn:
        for cid in s:
            events = [e["state"] for e in claim_store.history(conn, cid)]
            assert events.count("handed_over") <= 1 and events.count("delivering") <= 1
        [row] = outbox_store.listing(conn)
    assert row["status"] == "done" and row["attempts"] == 2
    assert msgspec.json.decode(row["receipt"])["partner_reference"].startswith("demo-agency:")


def test_missing_partner_certificate_waits_with_a_clear_error_and_goes_out_once_it_is_there(app: App,
                                                                                           clock: Clock) -> None:
    cert = app.config.keys_dir / "partners" / "demo-agency.crt"
    kept = cert.read_bytes()
    cert.unlink()  # not copied in yet, or its volume not mounted: the operator's to mend, not a dead letter
    ingest_file(app, DEMO, "demo")
    assert Dispatcher(app, owner="t").run_once()
    with read_tx(app.engine) as conn:
        [row] = outbox_store.listing(conn)
    assert row["status"] == "pending" and "demo-agency.crt" in row["last_error"], row
    assert "does not exist" in row["last_error"]
    assert State.FAILED not in states(app).values()

    cert.write_bytes(kept)
    clock.advance(3600)
    assert Dispatcher(app, owner="t2").drain() == 1
    assert sorted(v.value for v in states(app).values()).count("handed_over") == 7


def test_document_bytes_travel_inside_the_encrypted_batch(app: App, clock: Clock) -> None:
    import base64
    import hashlib

    from gateway.domain.lifecycle import State as St
    from gateway.domain.model import Document
    from gateway.store import documents as documents_store
    from gateway.store import submissions as sub_store
    from gateway.store.claims import NewClaim
    from gateway.store.db import write_tx
    from tests.factories import make_claim

    pdf = b"%PDF-1.4 invoice RE-77 \x00\xff binary"
    sha = hashlib.sha256(pdf).hexdigest()
    claim = make_claim("R-77", partner_id="demo-agency",
                       documents=[Document(name="RE-77.pdf", media_type="application/pdf", sha256=sha, size=len(pdf))])
    with write_tx(app.engine) as conn:
        sub = sub_store.create(conn, client_id="demo", channel="soap", filename=None, sha256="ef" * 32, size=1,
                               dedupe=False)
        assert sub is not None
        [cid] = claim_store.insert_new(conn, app.cipher, sub["id"], [NewClaim(claim=claim, state=St.QUEUED)])
        documents_store.add_many(conn, app.cipher, [(cid, "demo", "RE-77.pdf", "application/pdf", "invoice", sha,
                                                     pdf)])
        outbox_store.enqueue(conn, key=f"deliver:{sub['id']}:demo-agency:1", client_id="demo",
                             partner_id="demo-agency", operation="deliver_batch", payload={"claim_ids": [cid]},
                             now=app.now())
    assert Dispatcher(app, owner="t").drain() == 1
    [batch] = partner_dir(app).glob("*.p7m")
    keys = app.config.keys_dir / "partners"
    signed = decrypt(batch.read_bytes(), load_cert(keys / "demo-agency.crt"), load_private_key(keys / "demo-agency.key"))
    xml = signed[signed.index(b"<?xml"):signed.index(b"</batch>") + len(b"</batch>")]
    assert validate_batch(xml) == []
    ns = "{urn:inkasso-gateway:partner-batch:1}"
    doc = etree.fromstring(xml).find(f"{ns}claim/{ns}documents/{ns}document")
    assert doc is not None and doc.findtext(f"{ns}sha256") == sha
    assert base64.b64decode(doc.findtext(f"{ns}content") or "") == pdf


def test_a_partner_certificate_replaced_in_place_is_used_from_the_next_batch(app: App, clock: Clock,
                                                                            tmp_path: Path) -> None:
    """The partner's new certificate (its key rolled over), put where the old one was, is what the next batch is
    encrypted to; before, a running dispatcher kept the one it had loaded until serve restarted, and went on
    sending batches the partner could no longer open."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from gateway.crypto.certs import new_rsa_key, self_signed_cert, write_cert

    keys = app.config.keys_dir / "partners"
    old_cert, old_key = load_cert(keys / "demo-agency.crt"), load_private_key(keys / "demo-agency.key")
    worker = Dispatcher(app, owner="t1")
    ingest_file(app, DEMO, "demo")
    assert worker.drain() == 1
    [first] = partner_dir(app).glob("*.p7m")
    assert b"<?xml" in decrypt(first.read_bytes(), old_cert, old_key)

    new_key = new_rsa_key(2048)
    new_cert = self_signed_cert(new_key, "demo-agency", usage="encryption", days=30)
    write_cert(keys / "demo-agency.crt", new_cert)  # the operator copies the partner's new certificate in
    assert new_cert.public_bytes(Encoding.PEM) == (keys / "demo-agency.crt").read_bytes()
    other = tmp_path / "more.csv"
    other.write_bytes(DEMO.read_bytes().replace(b"RE-", b"NX-"))
    ingest_file(app, other, "demo")
    assert worker.drain() == 1  # the same dispatcher, still running
    [second] = [p for p in partner_dir(app).glob("*.p7m") if p != first]
    assert b"<?xml" in decrypt(second.read_bytes(), new_cert, new_key)
    with pytest.raises(Exception):
        decrypt(second.read_bytes(), old_cert, old_key)
