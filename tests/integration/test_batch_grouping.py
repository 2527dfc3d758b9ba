"""Partner batches share client, partner and currency; a claim that cannot be rendered fails alone.

Real store (SQLite and PostgreSQL), real directory adapter, real CMS: each batch the partner gets is
decrypted and validated against schemas/partner-batch-v1.xsd.
"""

from __future__ import annotations

import base64
import csv
import json
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from lxml import etree

from gateway.bootstrap import DATA_KEY_FILE, App, build_app
from gateway.config import load_config
from gateway.crypto.certs import load_cert, load_private_key
from gateway.crypto.cms import decrypt
from gateway.crypto.fieldcrypt import FieldCipher
from gateway.domain.lifecycle import State
from gateway.services import claim_ops, submit
from gateway.services.dispatch import Dispatcher, retry_dead
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from gateway.services.render import validate_batch
from gateway.store import claims as claim_store
from gateway.store import keys_store
from gateway.store import outbox as outbox_store
from gateway.store import submissions as sub_store
from gateway.store.claims import NewClaim
from gateway.store.db import read_tx, write_tx
from tests.conftest import ROOT, write_config
from tests.factories import make_claim
from tests.support import Clock

NS = "{urn:inkasso-gateway:partner-batch:1}"
PLANTED = "Zyxwvutsrq"  # a debtor name that must never appear in a reason or the outbox
HEADER = ("Rechnungsnr;Kundennr;Anrede;Vorname;Nachname;Firma;Geburtsdatum;Strasse;Hausnr;PLZ;Ort;Land;E-Mail;Telefon;"
          "IBAN;Rechnungsdatum;Faellig;Betrag;Mahngebuehr;Mahndatum;Bemerkung;Waehrung").split(";")


@pytest.fixture
def shop(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """The demo client with a mapping that reads the currency from a column (a shop selling abroad)."""
    path = write_config(tmp_path, db_url)
    demo = (ROOT / "mappings" / "demo.yaml").read_text(encoding="utf-8")
    assert "  currency: {const: EUR}\n" in demo
    (tmp_path / "mappings" / "demo.yaml").write_text(
        demo.replace("  currency: {const: EUR}\n", "  currency: {column: Waehrung, default: EUR}\n"), encoding="utf-8")
    init_keys(load_config(path))
    app = build_app(path, migrate=True)
    monkeypatch.setattr(app, "now", Clock(app))
    yield app
    app.close()


def shop_csv(path: Path, currencies: list[str]) -> Path:
    with path.open("w", encoding="windows-1252", newline="") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(HEADER)
        for i, cur in enumerate(currencies, start=1):
            w.writerow([f"S-{i:03d}", f"K-{i}", "Frau", "Eva", f"Kunde{i}", "", "01.02.1980", "Weg", str(i), "8001",
                        "Zürich", "CH", f"k{i}@example.org", "", "", "01.03.2025", "15.03.2025", f"{10 + i},50",
                        "", "", "", cur])
    return path


def batches(app: App) -> dict[str, etree._Element]:
    """Every batch at the partner, decrypted and checked against the XSD, by file name."""
    keys = app.config.keys_dir / "partners"
    cert, key = load_cert(keys / "demo-agency.crt"), load_private_key(keys / "demo-agency.key")
    out = {}
    for f in sorted(app.config.path("var/partners/demo-agency").glob("*.p7m")):
        signed = decrypt(f.read_bytes(), cert, key)
        xml = signed[signed.index(b"<?xml"):signed.index(b"</batch>") + len(b"</batch>")]
        assert validate_batch(xml) == [], f.name
        out[f.name] = etree.fromstring(xml)
    return out


def currencies_of(batch: etree._Element) -> tuple[str, set[str]]:
    """The header's currency and the currencies of every amount in the batch."""
    header = batch.find(f"{NS}totalAmount")
    assert header is not None
    return header.get("currency", ""), {e.get("currency", "") for e in batch.iter() if e.get("currency")}


def states(app: App, ids: list[int]) -> dict[int, State]:
    with read_tx(app.engine) as conn:
        return claim_store.current_states(conn, ids)


def outbox_rows(app: App) -> dict[str, dict[str, object]]:
    with read_tx(app.engine) as conn:
        return {r["idempotency_key"]: dict(r) for r in outbox_store.listing(conn, limit=1000)}


def insert_queued(app: App, claims: list[tuple[str, str]], cipher: FieldCipher | None = None) -> list[int]:
    """Claims (reference, currency) stored queued for demo-agency, without an outbox row."""
    with write_tx(app.engine) as conn:
        sub = sub_store.create(conn, client_id="demo", channel="soap", filename=None, sha256=secrets.token_hex(32),
                               size=1, dedupe=False)
        assert sub is not None
        return claim_store.insert_new(conn, cipher or app.cipher, sub["id"], [
            NewClaim(claim=make_claim(ref, currency=cur, partner_id="demo-agency"), state=State.QUEUED)
            for ref, cur in claims])


def enqueue(app: App, key: str, ids: list[int]) -> None:
    with write_tx(app.engine) as conn:
        outbox_store.enqueue(conn, key=key, client_id="demo", partner_id="demo-agency", operation="deliver_batch",
                             payload={"claim_ids": ids}, now=app.now())


def test_file_with_eur_and_chf_rows_hands_over_every_claim_in_one_batch_per_currency(shop: App, tmp_path: Path) -> None:
    currencies = ["EUR"] * 34 + ["CHF"] * 3
    currencies[5], currencies[20] = "CHF", "CHF"  # CHF rows among EUR rows, not at the end
    result = ingest_file(shop, shop_csv(tmp_path / "shop.csv", currencies), "demo")
    assert result.accepted == 37
    sid = result.submission
    assert sid is not None
    with read_tx(shop.engine) as conn:
        sub_id = sub_store.get(conn, sid)["id"]
        ids = [r["id"] for r in claim_store.listing(conn, client_id="demo", limit=100)]
    assert sorted(outbox_rows(shop)) == [f"deliver:{sub_id}:demo-agency:1:CHF", f"deliver:{sub_id}:demo-agency:1:EUR"]

    assert Dispatcher(shop, owner="t").drain() == 2
    assert set(states(shop, ids).values()) == {State.HANDED_OVER} and len(ids) == 37
    got = batches(shop)
    assert sorted(got) == [f"deliver-{sub_id}-demo-agency-1-CHF.xml.p7m", f"deliver-{sub_id}-demo-agency-1-EUR.xml.p7m"]
    by_currency = {currencies_of(b)[0]: b for b in got.values()}
    for cur, n in (("EUR", 32), ("CHF", 5)):
        batch = by_currency[cur]
        assert currencies_of(batch) == (cur, {cur})
        assert batch.findtext(f"{NS}claimCount") == str(n) and len(batch.findall(f"{NS}claim")) == n
        total = sum(Decimal(c.findtext(f"{NS}totalOpenAmount") or "") for c in batch.findall(f"{NS}claim"))
        assert Decimal(batch.findtext(f"{NS}totalAmount") or "") == total


def test_soap_submit_and_release_group_by_currency(app: App) -> None:
    drafts = [submit.Draft(reference=ref, claim=make_claim(ref, currency=cur))
              for ref, cur in (("A-1", "EUR"), ("A-2", "CHF"), ("A-3", "EUR"))]
    sent = submit.submit_claims(app, "demo", drafts, release=True)
    held = submit.submit_claims(app, "demo", [submit.Draft(reference=r, claim=make_claim(r, currency=c))
                                              for r, c in (("H-1", "CHF"), ("H-2", "EUR"))], release=False)
    single = submit.submit_claims(app, "demo", [submit.Draft(reference="S-1", claim=make_claim("S-1"))], release=True)
    run = claim_ops.release(app, "demo", submission=held.submission)
    with read_tx(app.engine) as conn:
        sid, single_id = (sub_store.get(conn, s)["id"] for s in (sent.submission, single.submission))
    assert sorted(outbox_rows(app)) == sorted([
        f"deliver:{sid}:demo-agency:1:CHF", f"deliver:{sid}:demo-agency:1:EUR",
        f"deliver:{single_id}:demo-agency:1",  # one currency: the key it always had
        f"release:{run.run}:demo-agency:1:CHF", f"release:{run.run}:demo-agency:1:EUR"])
    assert Dispatcher(app, owner="t").drain() == 5
    ids = [a.claim_id for r in (sent, single) for a in r.results if a.claim_id] + run.released
    assert len(ids) == 6 and set(states(app, ids).values()) == {State.HANDED_OVER}
    assert sorted(currencies_of(b) for b in batches(app).values()) == [
        ("CHF", {"CHF"}), ("CHF", {"CHF"}), ("EUR", {"EUR"}), ("EUR", {"EUR"}), ("EUR", {"EUR"})]


def test_mixed_row_from_before_the_grouping_is_split_and_delivered(app: App) -> None:
    ids = insert_queued(app, [("M-1", "EUR"), ("M-2", "CHF"), ("M-3", "EUR"), ("M-4", "GBP")])
    enqueue(app, "deliver:99:demo-agency:1", ids)  # the key an ingest wrote before batches were grouped
    worker = Dispatcher(app, owner="t")
    assert worker.run_once()
    rows = outbox_rows(app)
    old = rows.pop("deliver:99:demo-agency:1")
    assert old["status"] == "done"
    assert msgspec.json.decode(str(old["receipt"])) == {"split": [
        "deliver:99:demo-agency:1:CHF", "deliver:99:demo-agency:1:EUR", "deliver:99:demo-agency:1:GBP"]}
    assert {k: msgspec.json.decode(str(r["payload"]))["claim_ids"] for k, r in rows.items()} == {
        "deliver:99:demo-agency:1:CHF": [ids[1]], "deliver:99:demo-agency:1:EUR": [ids[0], ids[2]],
        "deliver:99:demo-agency:1:GBP": [ids[3]]}
    assert set(states(app, ids).values()) == {State.QUEUED}  # nothing moved before the split
    assert worker.drain() == 3
    assert set(states(app, ids).values()) == {State.HANDED_OVER}
    got = batches(app)
    assert sorted(got) == ["deliver-99-demo-agency-1-CHF.xml.p7m", "deliver-99-demo-agency-1-EUR.xml.p7m",
                           "deliver-99-demo-agency-1-GBP.xml.p7m"]
    assert sorted(len(b.findall(f"{NS}claim")) for b in got.values()) == [1, 1, 2]
    assert all(len(currencies_of(b)[1]) == 1 for b in got.values())


def _failed_event(app: App, claim_id: int) -> dict[str, object]:
    with read_tx(app.engine) as conn:
        last = claim_store.history(conn, claim_id)[-1]
    assert (last["from_state"], last["state"], last["kind"]) == ("delivering", "failed", "delivery_failed")
    data: dict[str, object] = last["data"]
    return data


def test_claim_that_cannot_be_rendered_fails_alone_and_retry_tries_it_again(app: App) -> None:
    ids = insert_queued(app, [("G-1", "EUR"), ("G-2", "EUR"), ("G-3", "EUR")])
    with write_tx(app.engine) as conn:
        sub = sub_store.create(conn, client_id="demo", channel="soap", filename=None, sha256="ab" * 32, size=1,
                               dedupe=False)
        assert sub is not None
        bad = make_claim("G-bad", partner_id="demo-agency")
        bad = msgspec.structs.replace(bad, debtor=msgspec.structs.replace(bad.debtor, last_name=f"{PLANTED}\x01"))
        [bad_id] = claim_store.insert_new(conn, app.cipher, sub["id"], [NewClaim(claim=bad, state=State.QUEUED)])
    enqueue(app, "deliver:7:demo-agency:1", [ids[0], bad_id, ids[1], ids[2]])
    worker = Dispatcher(app, owner="t")
    assert worker.drain() == 1
    assert set(states(app, ids).values()) == {State.HANDED_OVER}
    data = _failed_event(app, bad_id)
    assert data["error"] == f"claim {bad_id}: <lastName>: a text holds a control character that XML 1.0 cannot carry"
    [batch] = batches(app).values()
    assert [c.findtext(f"{NS}creditorReference") for c in batch.findall(f"{NS}claim")] == ["G-1", "G-2", "G-3"]
    rows = outbox_rows(app)
    assert rows["deliver:7:demo-agency:1"]["status"] == "done"
    parked = rows[f"deliver:7:demo-agency:1:unrendered:{rows['deliver:7:demo-agency:1']['id']}"]
    assert parked["status"] == "dead" and data["outbox"] == parked["id"]
    assert msgspec.json.decode(str(parked["payload"]))["claim_ids"] == [bad_id]
    assert PLANTED not in json.dumps({k: {c: str(v) for c, v in r.items()} for k, r in rows.items()})

    # The operator retries: still unrenderable, so the parked row is dead again (no new row), claim failed.
    assert retry_dead(app, int(str(parked["id"]))) == 1
    assert worker.drain() == 1
    again = outbox_rows(app)
    assert len(again) == 2 and again[str(parked["idempotency_key"])]["status"] == "dead"
    assert "<lastName>" in str(again[str(parked["idempotency_key"])]["last_error"])
    assert states(app, [bad_id]) == {bad_id: State.FAILED}
    assert len(batches(app)) == 1


def test_claim_whose_data_key_is_missing_fails_alone_until_the_key_is_back(app: App, config_path: Path) -> None:
    key_file = app.config.keys_dir / DATA_KEY_FILE
    doc = json.loads(key_file.read_text())
    lost = base64.b64encode(secrets.token_bytes(32)).decode()
    keys = {k: base64.b64decode(v) for k, v in {**doc["keys"], "k-backup": lost}.items()}
    other = FieldCipher(keys, "k-backup", base64.b64decode(doc["index_key"]))
    good = insert_queued(app, [("K-1", "EUR"), ("K-2", "EUR")])
    with write_tx(app.engine) as conn:  # the client's newest key, wrapped under a master key this gateway lacks
        keys_store.add_kek(conn, other, "demo")
    [orphan] = insert_queued(app, [("K-3", "EUR")], cipher=other)  # its data key wrapped by that client key
    enqueue(app, "deliver:8:demo-agency:1", [good[0], orphan, good[1]])
    assert Dispatcher(app, owner="t").drain() == 1
    assert set(states(app, good).values()) == {State.HANDED_OVER}
    assert "unknown key 'k-backup'" in str(_failed_event(app, orphan)["error"])
    parked = _failed_event(app, orphan)["outbox"]

    # The key is restored from backup; after a restart the operator retries the parked claim.
    key_file.write_text(json.dumps({**doc, "keys": {**doc["keys"], "k-backup": lost}}))
    restarted = build_app(config_path)
    try:
        assert retry_dead(restarted, int(str(parked))) == 1
        assert Dispatcher(restarted, owner="t2").drain() == 1
        assert states(restarted, [orphan]) == {orphan: State.HANDED_OVER}
        assert len(batches(restarted)) == 2
    finally:
        restarted.close()
