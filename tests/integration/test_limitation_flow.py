"""Limitation end to end: a client file with old items ingested (held, warned and accepted rows with their codes in
the ack), the release of a time-barred claim refused without a reason and recorded with one (service, CLI, SOAP
through zeep), ExplainClaim's words, and the limitation date in the rendered partner batch.

Dates in the file are relative to today, because ingest validates against the day the file is received.
"""

from __future__ import annotations

import csv
import json
import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.crypto.certs import load_cert, load_private_key
from gateway.crypto.cms import decrypt
from gateway.domain.limitation import add_months
from gateway.entrypoints.cli import main
from gateway.services import claim_ops, claim_queries
from gateway.services.dispatch import Dispatcher
from gateway.services.inbox import resume_unfinished
from gateway.services.ingest import ingest_file
from gateway.services.ingest_run import IngestRun
from gateway.services.keys import init_keys
from gateway.services.render import validate_batch
from gateway.store import claims as claim_store
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from tests.conftest import ROOT, write_config

HEADER = ("Rechnungsnr;Vorname;Nachname;Geburtsdatum;Strasse;Hausnr;PLZ;Ort;E-Mail;Rechnungsdatum;Faellig;Betrag;"
          "Anerkenntnis;Mahnbescheid;Mahnbescheid_Ende")
NAME = "Quenzelbrink"  # planted: must not reach any finding, log line or answer about limitation
TODAY = datetime.now(timezone.utc).date()


def d(day: date | None) -> str:
    return day.strftime("%d.%m.%Y") if day else ""


def line(ref: str, due: date, ack: date | None = None, dunning: date | None = None,
         dunning_end: date | None = None) -> str:
    return (f"{ref};Erika;{NAME};01.01.1980;Weg;1;10115;Berlin;e@example.de;{d(due - timedelta(days=14))};{d(due)};"
            f"100,00;{d(ack)};{d(dunning)};{d(dunning_end)}")


Y = TODAY.year
NEAR_ACK = add_months(TODAY, -36) + timedelta(days=20)  # acknowledged: the new period ends in about 20 days
ROWS = [
    line("R-OLD", date(Y - 4, 6, 1)),                                  # ended 31.12. last year: held
    line("R-NEAR", date(Y - 5, 6, 1), ack=NEAR_ACK),                   # ends within 3 months: warned
    line("R-ACK", date(Y - 4, 6, 1), ack=TODAY - timedelta(days=365)),  # restarted a year ago: accepted
    line("R-COURT", date(Y - 5, 6, 1), dunning=date(Y - 2, 3, 1)),      # court dunning order running: accepted
    line("R-NEW", TODAY - timedelta(days=40)),                          # recent: accepted
    line("R-FUTURE", date(Y - 1, 6, 1), ack=TODAY + timedelta(days=3)),  # acknowledged tomorrow: rejected
]


@pytest.fixture
def lim_app(tmp_path: Path, db_url: str) -> Any:
    path = write_config(tmp_path, db_url)
    spec = yaml.safe_load((ROOT / "mappings" / "demo.yaml").read_text(encoding="utf-8"))
    spec["format"]["encoding"] = "utf-8"
    spec["fields"] = {k: v for k, v in spec["fields"].items()
                      if k not in ("last_dunning_date", "fees.dunning", "fees.dunning_date", "memo",
                                   "debtor.customer_number", "debtor.salutation", "debtor.company",
                                   "debtor.phone", "debtor.iban", "debtor.country")}
    spec["fields"].update({"acknowledgement_date": "Anerkenntnis", "dunning_order_date": "Mahnbescheid",
                           "dunning_order_end_date": "Mahnbescheid_Ende"})
    (tmp_path / "mappings" / "demo.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    init_keys(load_config(path))
    app = build_app(path, migrate=True)
    yield app
    app.close()


def _ingest(app: App, tmp_path: Path) -> Any:
    src = tmp_path / "old-items.csv"
    src.write_text("\r\n".join((HEADER, *ROWS)) + "\r\n", encoding="utf-8")
    return ingest_file(app, src, "demo", ack_path=tmp_path / "old-items.ack.csv")


def _ack(result: Any) -> dict[str, dict[str, str]]:
    with open(str(result.ack_path), encoding="utf-8", newline="") as fh:
        return {r["Rechnungsnr"]: r for r in csv.DictReader(fh, delimiter=";")}


def _ids(app: App, result: Any) -> dict[str, int]:
    return {r.reference: r.claim_id for r in result.results if r.claim_id is not None}


def test_old_items_are_held_warned_or_accepted_with_their_codes_in_the_ack(lim_app: App, tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    result = _ingest(lim_app, tmp_path)
    ack = _ack(result)
    got = {ref: (r["outcome"], r["codes"]) for ref, r in ack.items()}
    assert got == {"R-OLD": ("held", "time_barred"), "R-NEAR": ("accepted", "limitation_near"),
                   "R-ACK": ("accepted", ""), "R-COURT": ("accepted", ""), "R-NEW": ("accepted", ""),
                   "R-FUTURE": ("rejected", "date_in_future")}
    old = ack["R-OLD"]["messages"]
    assert old.startswith("Faellig: time-barred: the limitation period ended on ")  # the client's own column
    assert f"ended on {Y - 1}-12-31" in old and f"due date {Y - 4}-06-01" in old and "3 years" in old
    near = ack["R-NEAR"]["messages"]
    assert f"acknowledgement date {NEAR_ACK.isoformat()}" in near
    assert f"ends on {add_months(NEAR_ACK, 36).isoformat()}" in near
    assert ack["R-FUTURE"]["messages"].startswith("Anerkenntnis: ")
    with read_tx(lim_app.engine) as conn:
        sub = sub_store.get(conn, str(result.submission))
        stored = sub_store.findings(conn, sub["id"])
        hist = claim_store.history(conn, _ids(lim_app, result)["R-OLD"])
    assert hist[-1]["state"] == "held" and hist[-1]["data"]["codes"] == ["time_barred"]
    mine = [f for f in stored if f["code"] in ("time_barred", "limitation_near")]
    assert len(mine) == 2 and all(NAME not in f["message"] and "100" not in f["message"].split("(")[0] for f in mine)
    assert NAME not in caplog.text


def test_release_of_a_time_barred_claim_needs_a_reason(lim_app: App, tmp_path: Path) -> None:
    ids = _ids(lim_app, _ingest(lim_app, tmp_path))
    old = ids["R-OLD"]
    refused = claim_ops.release(lim_app, "demo", claim_ids=[old])
    assert refused.released == [] and [c for c, _ in refused.skipped] == [old]
    assert "time-barred (time_barred): release it with a reason" in refused.skipped[0][1]
    assert claim_queries.get_claim(lim_app, "demo", old).state == "held"
    explained = claim_queries.explain(lim_app, "demo", old)
    [why] = explained.reasons
    assert why.code == "time_barred" and why.field == "due_date" and "release it with a reason" in why.fix
    reason = "limitation interrupted by acknowledgement on 2025-03-01"
    done = claim_ops.release(lim_app, "demo", claim_ids=[old], reason=f"  {reason} ")
    assert done.released == [old] and done.skipped == []
    last = claim_queries.history(lim_app, "demo", old)[-1]
    assert (last["state"], last["kind"], last["actor"]) == ("queued", "released", "client")
    assert last["data"] == {"run": done.run, "reason": reason, "codes": ["time_barred"]}


def test_cli_release_refuses_without_reason_and_records_it(lim_app: App, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    ids = _ids(lim_app, _ingest(lim_app, tmp_path))
    config = str(lim_app.config.source)
    assert main(["--config", config, "claims", "release", str(ids["R-OLD"]), "--json"]) == 5  # partly done
    out = json.loads(capsys.readouterr().out)
    assert out["done"] == [] and "time_barred" in out["skipped"][0]["reason"]
    assert main(["--config", config, "claims", "release", str(ids["R-OLD"]), "--reason",
                 "Anerkenntnis vom 01.03.2025", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["done"][0]["claim_id"] == ids["R-OLD"]
    assert claim_queries.history(lim_app, "demo", ids["R-OLD"])[-1]["data"]["reason"] == "Anerkenntnis vom 01.03.2025"


def test_partner_batch_carries_the_limitation_date(lim_app: App, tmp_path: Path) -> None:
    ids = _ids(lim_app, _ingest(lim_app, tmp_path))
    worker = Dispatcher(lim_app, owner="test")
    try:
        assert worker.drain() == 1
    finally:
        worker.close()
    [batch] = lim_app.config.path("var/partners/demo-agency").glob("*.p7m")
    keys = lim_app.config.keys_dir / "partners"
    signed = decrypt(batch.read_bytes(), load_cert(keys / "demo-agency.crt"),
                     load_private_key(keys / "demo-agency.key"))
    xml = signed[signed.index(b"<?xml"):signed.index(b"</batch>") + len(b"</batch>")]
    assert validate_batch(xml) == []  # the optional element keeps the batch valid v1
    ns = {"b": "urn:inkasso-gateway:partner-batch:1"}
    dates = {c.findtext("b:creditorReference", namespaces=ns): c.findtext("b:limitationDate", namespaces=ns)
             for c in etree.fromstring(xml).iterfind("b:claim", ns)}
    assert dates["R-NEAR"] == add_months(NEAR_ACK, 36).isoformat()
    assert dates["R-NEW"] == f"{(TODAY - timedelta(days=40)).year + 3}-12-31"
    assert dates["R-ACK"] == add_months(TODAY - timedelta(days=365), 36).isoformat()
    assert dates["R-COURT"] is None  # suspended without an end: no date to promise
    assert "R-OLD" not in dates and ids["R-OLD"]  # held, not sent


def test_a_resumed_file_is_judged_on_the_day_it_was_received(lim_app: App, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the first chunk, resumed 800 days later: every row keeps the outcome of its received day."""
    monkeypatch.setattr(lim_app.config.dispatcher, "batch_size", 2)
    real_flush = IngestRun._flush
    calls = {"n": 0}

    def crashing_flush(self: IngestRun, chunk: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("simulated crash after one committed chunk")
        real_flush(self, chunk)

    monkeypatch.setattr(IngestRun, "_flush", crashing_flush)
    with pytest.raises(SystemExit):
        _ingest(lim_app, tmp_path)
    monkeypatch.setattr(IngestRun, "_flush", real_flush)
    later = lim_app.now() + timedelta(days=800)
    monkeypatch.setattr(lim_app, "now", lambda: later)  # R-ACK would be time-barred then, R-FUTURE no longer future
    [result] = resume_unfinished(lim_app)
    got = {r.reference: (r.outcome, [f.code for f in r.findings]) for r in result.results}
    assert got == {"R-OLD": ("held", ["time_barred"]), "R-NEAR": ("accepted", ["limitation_near"]),
                   "R-ACK": ("accepted", []), "R-COURT": ("accepted", []), "R-NEW": ("accepted", []),
                   "R-FUTURE": ("rejected", ["date_in_future"])}
