"""A client's sandbox on SQLite and PostgreSQL: the config wiring it refuses, routing and the dispatcher keeping
sandbox and production claims apart (also for a hand-made outbox row and an operator's retry), production
lists, exports and change feeds without sandbox claims, scenarios in the simulated agency, and retention."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.simulators.agency import Agency
from adapters.simulators.files import FolderAgency, load_partner_keys
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.crypto.certs import new_rsa_key, self_signed_cert, write_cert
from gateway.domain.lifecycle import State
from gateway.domain.sandbox import scenario_for
from gateway.errors import ConfigError
from gateway.services import claim_export, claim_ops, claim_queries, monitoring
from gateway.services.ack import AckWriter, ack_schema
from gateway.services.dispatch import Dispatcher, retry_dead
from gateway.services.erasure import run_retention, run_sandbox_retention
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from gateway.services.partner_sync import sync_partner
from gateway.services.routing import Router
from gateway.services.status_files import write_due_status_files
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx, write_tx
from gateway.store.schema import outbox, submission_payloads
from tests.conftest import ROOT, write_config
from tests.factories import make_claim

DEMO = ROOT / "examples" / "demo.csv"
SANDBOX_PARTNER = {"adapter": "directory", "certificate": "var/keys/partners/sandbox.crt",
                   "options": {"path": "var/partners/sandbox"}, "sandbox": True,
                   "simulator": {"enabled": True, "step_seconds": 1}}


def _config(**clients: Any) -> dict[str, Any]:
    return {"clients": {"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
                                 "sandbox": {"retention_days": 30}, **clients}},
            "partners": {"demo-agency": {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
                                         "options": {"path": "var/partners/demo-agency"}},
                         "sandbox": SANDBOX_PARTNER}}


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[App]:
    path = write_config(tmp_path, db_url, soap={"changes_settle_seconds": 0}, **_config())
    init_keys(load_config(path))
    application = build_app(path, migrate=True)
    yield application
    application.close()


def _folder(app: App, partner: str) -> Path:
    return app.config.path(f"var/partners/{partner}")


def _csv(tmp_path: Path, name: str, rewrite: dict[str, str]) -> Path:
    """The demo file with some references renamed (the first column), written under ``name``."""
    text = DEMO.read_text(encoding="cp1252")
    for old, new in rewrite.items():
        text = text.replace(old, new)
    out = tmp_path / name
    out.write_text(text, encoding="cp1252")
    return out


def _refs() -> list[str]:
    with open(DEMO, encoding="cp1252", newline="") as fh:
        return [r[0] for r in list(csv.reader(fh, delimiter=";"))[1:]]


# -- config --------------------------------------------------------------------------------------
def _load(tmp_path: Path, **overrides: Any) -> None:
    load_config(write_config(tmp_path, "sqlite:///x.db", **overrides))


def test_config_makes_the_sandbox_client_and_refuses_wiring_that_could_leak(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "sqlite:///x.db", **_config(
        soap={"credentials": [{"username": "prod", "password_hash": "h1"},
                              {"username": "test", "password_hash": "h2", "sandbox": True}]}, hold_all=True,
        ack_format="xml"),
        web={"users": {"dev": {"client": "demo", "sandbox": True}}}))
    sbx = cfg.clients["demo.sandbox"]
    assert (sbx.sandbox_of, sbx.default_partner, sbx.mapping) == ("demo", "sandbox", "demo")
    assert (sbx.hold_all, sbx.ack_format, sbx.credit) == (True, "xml", None)  # as production, minus bureaus
    assert [c.username for c in cfg.clients["demo"].soap.credentials] == ["prod"]
    assert [c.username for c in sbx.soap.credentials] == ["test"]
    assert cfg.web.users["dev"].client == "demo.sandbox"
    assert cfg.partners["sandbox"].status_map["UNEINBRINGLICH"] == "closed_uncollectible"

    bad: list[tuple[dict[str, Any], str]] = [
        ({"routing": [{"partner": "sandbox", "client": "demo"}]}, "routing rules are for production"),
        ({"clients": {"demo": {"default_partner": "sandbox"}}}, "takes sandbox claims only"),
        ({"partners": {"sandbox": {**SANDBOX_PARTNER, "adapter": "http"}}}, "simulated agency"),
        ({"partners": {"sandbox": {**SANDBOX_PARTNER, "simulator": {"enabled": False}}}}, "simulated agency"),
        ({"partners": {"sandbox": {**SANDBOX_PARTNER, "simulator": {"enabled": True, "scenario": "nope"}}}},
         "unknown scenario"),
        ({"clients": {"x.sandbox": {"name": "X"}}}, "made by the gateway"),
        ({"web": {"users": {"op": {"operator": True, "sandbox": True}}}}, "operator login cannot"),
        ({"clients": {"demo": {"sandbox": {"retention_days": -1}}}}, "0 or more days"),
        ({"clients": {"demo": {"sandbox": {"partner": "demo-agency"}}}}, "needs a partner with sandbox: true"),
    ]
    for change, why in bad:
        doc = _config()
        for key, value in change.items():
            doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
        with pytest.raises(ConfigError, match=why):
            _load(tmp_path, **doc)
    no_partner = _config()
    del no_partner["partners"]["sandbox"]
    with pytest.raises(ConfigError, match="sandbox: true"):
        _load(tmp_path, **no_partner)


def test_config_refuses_a_sandbox_partner_sharing_a_folder_or_certificate(tmp_path: Path) -> None:
    real = "partners.demo-agency.options.path"
    shared: list[tuple[dict[str, Any], str, str]] = [
        ({"path": "var/partners/demo-agency"}, "partners.sandbox.options.path", real),
        ({"path": "var/partners/x/../demo-agency/"}, "partners.sandbox.options.path", real),  # resolved
        ({"path": "var/partners/demo-agency/test"}, "partners.sandbox.options.path", real),  # inside
        ({"path": "var/partners"}, "partners.sandbox.options.path", real),  # holds the real one
        ({"path": "var/partners/sandbox", "instruction_path": "var/partners/demo-agency/instructions"},
         "partners.sandbox.options.instruction_path", real),
    ]
    for options, mine, theirs in shared:
        doc = _config()
        doc["partners"]["sandbox"] = {**SANDBOX_PARTNER, "options": options}
        with pytest.raises(ConfigError) as caught:
            _load(tmp_path, **doc)
        assert mine in str(caught.value) and theirs in str(caught.value), str(caught.value)
    doc = _config()
    doc["partners"]["mailed"] = {"adapter": "mail", "certificate": "var/keys/partners/mailed.crt",
                                 "options": {"status_path": "var/partners/sandbox/status"}}
    with pytest.raises(ConfigError, match="partners.mailed.options.status_path"):
        _load(tmp_path, **doc)
    doc = _config()
    doc["partners"]["sandbox"] = {**SANDBOX_PARTNER, "certificate": "var/keys/partners/../partners/demo-agency.crt"}
    with pytest.raises(ConfigError, match="partners.sandbox.certificate is the same file as "
                                          "partners.demo-agency.certificate"):
        _load(tmp_path, **doc)
    # Two certificate files for one key pair: the real agency could open every sandbox batch.
    key = new_rsa_key(1024)
    (tmp_path / "var/keys/partners").mkdir(parents=True, exist_ok=True)
    for name in ("demo-agency", "copy"):
        write_cert(tmp_path / f"var/keys/partners/{name}.crt", self_signed_cert(key, name, usage="encryption"))
    doc = _config()
    doc["partners"]["sandbox"] = {**SANDBOX_PARTNER, "certificate": "var/keys/partners/copy.crt"}
    with pytest.raises(ConfigError, match="the same key as partners.demo-agency.certificate"):
        _load(tmp_path, **doc)
    write_cert(tmp_path / "var/keys/partners/copy.crt",
               self_signed_cert(new_rsa_key(1024), "copy", usage="encryption"))
    _load(tmp_path, **doc)  # a key of its own: fine
    ok = _config()
    ok["partners"]["sandbox"] = {**SANDBOX_PARTNER, "options": {"path": "var/partners/demo-agency-sandbox"}}
    _load(tmp_path, **ok)  # a name that merely starts like the real folder's is apart from it


def test_router_keeps_sandbox_claims_at_the_sandbox_partner(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "sqlite:///x.db", **_config(),
                                   routing=[{"partner": "demo-agency"}]))  # a catch-all rule
    router = Router(cfg)
    assert router.pick(make_claim("R-1", client_id="demo.sandbox")) == "sandbox"
    assert router.pick(make_claim("R-1", client_id="demo.sandbox", partner_id="demo-agency")) == "sandbox"
    assert router.pick(make_claim("R-1", client_id="demo")) == "demo-agency"
    assert router.pick(make_claim("R-1", client_id="demo", partner_id="sandbox")) is None  # held no_partner


def test_scenario_is_chosen_by_reference_prefix_then_memo_keyword() -> None:
    assert scenario_for("SBX-UNCOLLECTIBLE-4711", None) == "uncollectible"
    assert scenario_for("sbx-disputed", "sandbox:paid") == "disputed"
    assert scenario_for("R-1", "bitte sandbox:instalments spielen") == "instalments"
    assert scenario_for("SBX-NOPE-1", "nothing", default="court") == "court"


def test_a_sandbox_ack_is_marked_in_both_forms_and_stays_valid(tmp_path: Path) -> None:
    for client, marked in (("demo.sandbox", True), ("demo", False)):
        for suffix in ("csv", "xml"):
            final = tmp_path / "inbox" / client / "ack" / f"f.{suffix}.ack.{suffix}"
            with AckWriter(final) as w:
                w.row(2, "R-1", "accepted", 7, [])
                w.commit()
            if suffix == "xml":
                doc = etree.parse(str(final))
                ack_schema().assertValid(doc)
                assert (doc.getroot().get("sandbox") == "true") is marked
            else:
                lines = final.read_text(encoding="utf-8").splitlines()
                assert (lines[1].split(";")[2] == "sandbox") is marked and lines[-1].startswith("2;R-1;accepted")


# -- delivery ------------------------------------------------------------------------------------
def test_sandbox_claims_go_to_the_simulated_agency_and_play_their_scenarios(app: App, tmp_path: Path) -> None:
    refs = _refs()
    rewrite = {refs[0]: "SBX-UNCOLLECTIBLE-1", refs[1]: "SBX-DISPUTED-1", refs[2]: "SBX-RECEIVED-1"}
    result = ingest_file(app, _csv(tmp_path, "run.csv", rewrite), "demo.sandbox")
    assert result.submission is not None and result.submission.startswith("SBX")
    ack = app.config.inbox_dir / "demo.sandbox" / "ack" / "run.csv.ack.csv"
    assert ack.read_text(encoding="utf-8").splitlines()[1].split(";")[2] == "sandbox"
    worker = Dispatcher(app, owner="t")
    assert worker.drain() >= 1
    assert list(_folder(app, "sandbox").glob("*.p7m")) and not list(_folder(app, "demo-agency").glob("*.p7m"))

    keys = app.config.keys_dir / "partners"
    agency = Agency("sandbox", step_seconds=None)
    folder = FolderAgency(agency, _folder(app, "sandbox"), *load_partner_keys(keys / "sandbox.crt",
                                                                             keys / "sandbox.key"),
                          "sandbox", scenarios="paid")
    folder.scan()
    for _ in range(4):  # more steps than the longest of these scenarios has
        agency.step_all()
    folder.write_status()
    sync_partner(app, "sandbox")
    with read_tx(app.engine) as conn:
        rows = claim_store.listing(conn, client_id="demo.sandbox")
    by_ref = {r["creditor_reference"]: r["state"] for r in rows}
    assert by_ref["SBX-UNCOLLECTIBLE-1"] == "closed_uncollectible"
    assert by_ref["SBX-DISPUTED-1"] == "disputed"
    assert by_ref["SBX-RECEIVED-1"] == "handed_over"
    assert {s for r, s in by_ref.items() if not r.startswith("SBX")} <= {"closed_paid", "held"}

    # requests about a sandbox claim reach the simulated agency and are answered like a real one's
    ids = {r["creditor_reference"]: int(r["id"]) for r in rows}
    claim_ops.cancel(app, "demo.sandbox", ids["SBX-RECEIVED-1"], "test")
    claim_ops.send_message(app, "demo.sandbox", ids["SBX-DISPUTED-1"], "Rückruf erbeten")
    worker.drain()
    folder.scan()
    sync_partner(app, "sandbox")
    assert claim_queries.get_claim(app, "demo.sandbox", ids["SBX-RECEIVED-1"]).state == "cancelled_by_client"
    answers = [m for m in claim_ops.messages(app, "demo.sandbox", ids["SBX-DISPUTED-1"])
               if m["direction"] == "from_partner"]
    assert answers
    assert not list(_folder(app, "demo-agency").rglob("*.p7m"))  # nothing of it went to the real partner


def test_the_dispatcher_refuses_any_row_that_mixes_sandbox_and_production(app: App, tmp_path: Path) -> None:
    ingest_file(app, DEMO, "demo.sandbox")
    ingest_file(app, DEMO, "demo")
    with read_tx(app.engine) as conn:
        sbx = [r["id"] for r in claim_store.listing(conn, client_id="demo.sandbox", state="queued")]
        prod = [r["id"] for r in claim_store.listing(conn, client_id="demo", state="queued")]
    # rows no intake would write: by hand, or a bug; the dispatcher is the last line
    with write_tx(app.engine) as conn:
        outbox_store.enqueue(conn, key="forged:1", client_id="demo", partner_id="demo-agency",
                             operation="deliver_batch", payload={"claim_ids": [prod[0], sbx[0]]})
        outbox_store.enqueue(conn, key="forged:2", client_id="demo.sandbox", partner_id="demo-agency",
                             operation="deliver_batch", payload={"claim_ids": [sbx[1]]})
        outbox_store.enqueue(conn, key="forged:3", client_id="demo", partner_id="sandbox",
                             operation="deliver_batch", payload={"claim_ids": [prod[1]]})
    before = {p.name for p in _folder(app, "demo-agency").glob("*.p7m")}
    worker = Dispatcher(app, owner="t")
    with write_tx(app.engine) as conn:  # only the forged rows: the genuine ones are deferred
        for row in outbox_store.listing(conn, status="pending", limit=1000):
            if not row["idempotency_key"].startswith("forged:"):
                conn.execute(outbox.update().where(outbox.c.id == row["id"])
                             .values(available_at=app.now() + timedelta(days=1)))
    worker.drain()
    with read_tx(app.engine) as conn:
        forged = {r["idempotency_key"]: r for r in outbox_store.listing(conn, limit=1000)
                  if r["idempotency_key"].startswith("forged:")}
        states = claim_store.current_states(conn, sbx + prod)
    assert {k: r["status"] for k, r in forged.items()} == {"forged:1": "dead", "forged:2": "dead", "forged:3": "dead"}
    assert all("refused" in r["last_error"] for r in forged.values())
    assert {states[c] for c in (sbx[0], sbx[1], prod[0], prod[1])} == {State.QUEUED}
    assert {p.name for p in _folder(app, "demo-agency").glob("*.p7m")} == before == set()
    assert not list(_folder(app, "sandbox").glob("*.p7m"))  # the genuine rows wait; the forged one went nowhere

    # an operator's retry (the same path as `outbox retry`, with or without --force) is refused again
    retry_dead(app, int(forged["forged:2"]["id"]))
    worker.drain()
    with read_tx(app.engine) as conn:
        again = outbox_store.get(conn, int(forged["forged:2"]["id"]))
    assert again["status"] == "dead" and "refused" in again["last_error"]
    assert not list(_folder(app, "demo-agency").glob("*.p7m"))


# -- kept apart ----------------------------------------------------------------------------------
def test_production_lists_exports_and_feeds_leave_the_sandbox_out(app: App) -> None:
    ingest_file(app, DEMO, "demo.sandbox")
    ingest_file(app, DEMO, "demo")  # the same references: two clients, no duplicates
    with read_tx(app.engine) as conn:
        everyone = claim_store.listing(conn, limit=1000)
        sandboxes = claim_store.listing(conn, limit=1000, sandbox=True)
        subs = sub_store.listing(conn)
        sbx_subs = sub_store.listing(conn, sandbox=True)
        assert claim_store.count_listing(conn) == len(everyone)
    assert everyone and {r["client_id"] for r in everyone} == {"demo"}
    assert sandboxes and {r["client_id"] for r in sandboxes} == {"demo.sandbox"}
    assert len(everyone) == len(sandboxes)
    assert [s["client_id"] for s in subs] == ["demo"] and [s["client_id"] for s in sbx_subs] == ["demo.sandbox"]
    assert {r["client_id"] for r in claim_queries.operator_list(app, limit=1000)} == {"demo"}
    out = io.StringIO()
    assert claim_export.write_csv(app, claim_export.ExportFilter(), False, out) == len(everyone)
    assert "demo.sandbox" not in out.getvalue()
    events, _, _ = claim_queries.changes(app, "demo", 0, 500)
    sbx_ids = {r["id"] for r in sandboxes}
    assert events and not {e["claim_id"] for e in events} & sbx_ids
    sbx_events, _, _ = claim_queries.changes(app, "demo.sandbox", 0, 500)
    assert {e["claim_id"] for e in sbx_events} == sbx_ids
    with write_tx(app.engine) as conn:  # one unfinished submission on each side: the gauge counts production's
        for client in ("demo", "demo.sandbox"):
            sub_store.create(conn, client_id=client, channel="cli", filename="x.csv", sha256="ab" * 32, size=1,
                             dedupe=False)
    assert monitoring.backlog(app).submissions_processing == 1


def test_status_files_of_a_sandbox_are_its_own_and_marked(app: App) -> None:
    ingest_file(app, DEMO, "demo.sandbox")
    ingest_file(app, DEMO, "demo")
    written = write_due_status_files(app, force=True)
    by_client = {p.parent.parent.name: p for p in written}
    assert set(by_client) == {"demo", "demo.sandbox"}
    sbx_rows = list(csv.reader(io.StringIO(by_client["demo.sandbox"].read_text(encoding="utf-8")), delimiter=";"))
    prod_rows = list(csv.reader(io.StringIO(by_client["demo"].read_text(encoding="utf-8")), delimiter=";"))
    assert sbx_rows[1][6] == "sandbox" and "SANDBOX" in sbx_rows[1][8]
    assert "sandbox" not in {r[6] for r in prod_rows}
    with read_tx(app.engine) as conn:
        sbx_ids = {str(r["id"]) for r in claim_store.listing(conn, client_id="demo.sandbox")}
    assert not {r[1] for r in prod_rows[1:]} & sbx_ids and {r[1] for r in sbx_rows[2:]} == sbx_ids


def test_retention_erases_sandbox_claims_and_files_after_their_period(app: App) -> None:
    ingest_file(app, DEMO, "demo.sandbox")
    ingest_file(app, DEMO, "demo")
    Dispatcher(app, owner="t").drain()  # a batch at each agency: the simulated one's copy goes too
    assert list(_folder(app, "sandbox").glob("*.p7m")) and list(_folder(app, "demo-agency").glob("*.p7m"))
    # Files the gateway did not send a sandbox there stay, however old (should the folder ever be shared).
    (_folder(app, "sandbox") / "instructions").mkdir(exist_ok=True)
    strangers = [_folder(app, "sandbox") / "somebody-else.xml.p7m",
                 _folder(app, "sandbox") / "instructions" / "theirs.xml.p7m"]
    for stranger in strangers:
        stranger.write_bytes(b"not ours")
        os.utime(stranger, (0, 0))
    with read_tx(app.engine) as conn:
        sbx = [r["id"] for r in claim_store.listing(conn, client_id="demo.sandbox")]
        prod = [r["id"] for r in claim_store.listing(conn, client_id="demo")]
    assert not run_sandbox_retention(app, app.now() + timedelta(days=29)).claims  # not yet
    report = run_retention(app, app.now() + timedelta(days=31))
    assert report.claims == {"demo.sandbox": len(sbx)} and report.payloads == {"demo.sandbox": 1}
    assert report.agency_files == {"sandbox": 1}
    assert sorted(_folder(app, "sandbox").rglob("*.p7m")) == sorted(strangers)
    assert list(_folder(app, "demo-agency").glob("*.p7m"))  # a real partner's folder is not the gateway's to clean
    with read_tx(app.engine) as conn:
        erased = {r["id"]: claim_store.decode(r, app.cipher).debtor.last_name
                  for r in claim_store.rows_by_ids(conn, sbx + prod)}
        kept = {int(r["submission_id"]) for r in conn.execute(submission_payloads.select()).mappings()}
        history = claim_store.history(conn, sbx[0])
    assert {erased[c] for c in sbx} == {"[erased]"}
    assert "[erased]" not in {erased[c] for c in prod}
    assert len(kept) == 1  # the production file stays
    assert history[-1]["kind"] == "erased" and "sandbox retention" in history[-1]["data"]["reason"]
    assert not run_sandbox_retention(app, app.now() + timedelta(days=31)).claims  # once only
