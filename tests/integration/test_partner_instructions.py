"""Instructions reach the agency on every adapter, or are refused at once.

A creditor's ERP, through zeep against the served SOAP endpoint, cancels a handed-over claim, reports
a direct payment and sends a message; the dispatcher hands them to each partner simulator (API calls
for http and soap, instruction documents for the directory and SFTP agencies), the agency applies them
to its books and answers, and the answers come back through the partner sync. A partner configured to
take only deliveries refuses each operation with ``Client.Unsupported`` and queues nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import zeep

from adapters.simulators.agency import ANSWER, CANCELLED, DEFAULT_OPEN, PAID
from gateway.bootstrap import App, build_app
from gateway.entrypoints.soap.server import SoapServer
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.services.partner_sync import sync_partner
from gateway.services.render_instruction import validate_instruction
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.conftest import ROOT, write_config
from tests.contract.harness import CERT, PARTNER, Harness, running
from tests.integration.soap.conftest import Endpoint, client_config

DEMO = ROOT / "examples" / "demo.csv"
OPENSSL = shutil.which("openssl")
# Every operation a partner must hear, as the ERP calls it; what the refusal names.
REFUSED = {"CancelClaim": ("cancel", "cancellations"),
           "ReportDirectPayment": ("report_payment", "direct payment reports"),
           "SendMessage": ("send_message", "messages"),
           "RequestLongTermMonitoring": ("request_monitoring", "long-term monitoring requests"),
           "RefreshClaim": ("refresh", "refresh requests")}


@dataclass
class Gateway:
    app: App
    endpoint: Endpoint
    erp: zeep.Client

    def drain(self) -> int:
        worker = Dispatcher(self.app, owner="w")
        try:
            return worker.drain()
        finally:
            worker.close()

    def handed_over(self, sim: Harness | None) -> list[int]:
        """The demo file's claims, delivered to the partner: their ids."""
        ingest_file(self.app, DEMO, "demo")
        assert self.drain() == 1
        if sim is not None:
            sim.pump()
        with read_tx(self.app.engine) as conn:
            rows = claim_store.listing(conn, client_id="demo")
        ids = sorted(r["id"] for r in rows if r["state"] == "handed_over")
        assert len(ids) >= 3
        return ids

    def outbox(self) -> list[dict[str, Any]]:
        with read_tx(self.app.engine) as conn:
            return [dict(r) for r in outbox_store.listing(conn)]


def _gateway(tmp_path: Path, db_url: str, keys: Path, partner: dict[str, Any]) -> Iterator[Gateway]:
    clients = client_config()
    clients["demo"] = {**clients["demo"], "default_partner": PARTNER}
    path = write_config(tmp_path, db_url, clients=clients, partners={PARTNER: partner},
                        routing=[{"partner": PARTNER, "client": "demo"}],
                        soap={"threads": 4, "changes_settle_seconds": 0})
    shutil.copytree(keys, tmp_path / "var" / "keys", dirs_exist_ok=True)
    app = build_app(path, migrate=True)
    server = SoapServer(app, host="127.0.0.1", port=0)
    server.start()
    try:
        endpoint = Endpoint(app, server, app.config.keys_dir / "tls.crt")
        yield Gateway(app, endpoint, endpoint.client())
    finally:
        server.stop()
        app.close()


@pytest.fixture(params=["directory", "sftp", "http", "soap"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with running(request.param, tmp_path) as h:
        yield h


@pytest.fixture
def gw(sim: Harness, tmp_path: Path, db_url: str, keys_template: Path) -> Iterator[Gateway]:
    gen = _gateway(tmp_path, db_url, keys_template, sim.partner())
    gateway = next(gen)
    sim.start()
    yield gateway
    next(gen, None)


def _kinds(erp: zeep.Client, claim_id: int) -> list[str]:
    return [e.kind for e in erp.service.GetClaimHistory(claim_id)]


def test_cancel_payment_and_message_reach_the_agency_and_its_answers_come_back(sim: Harness, gw: Gateway) -> None:
    cancel_id, paid_id, asked_id = gw.handed_over(sim)[:3]
    erp, day = gw.erp, date.today() - timedelta(days=1)
    assert sim.agency.cases[paid_id].code not in (CANCELLED, PAID)
    before = sim.agency.cases[paid_id].open_amount or DEFAULT_OPEN

    answers = [erp.service.CancelClaim(cancel_id, "paid in full at the counter"),
               erp.service.ReportDirectPayment(paid_id, Decimal("50.00"), day),
               erp.service.SendMessage(asked_id, "Bitte Ratenzahlung anbieten.")]
    # forwarded: durably queued for a partner that takes it; the partner alone closes a handed-over claim
    assert [(a.forwarded, a.state) for a in answers] == [(True, "handed_over")] * 3
    assert {r["status"] for r in gw.outbox() if r["operation"] != "deliver_batch"} == {"pending"}

    assert gw.drain() == 3
    assert {r["status"] for r in gw.outbox()} == {"done"}
    sim.pump()  # a file agency takes its instruction documents in and writes its status files
    sync_partner(gw.app, PARTNER)

    # the agency's books: the case closed as cancelled (never paid), the direct payment collected less
    case = sim.agency.cases[cancel_id]
    assert case.code == CANCELLED
    # the reason is kept sealed under the claim's key, and opened for the partner when the request goes out
    assert case.cancel_reasons == ["paid in full at the counter"]
    sim.agency.step_all()
    sim.agency.step_all()  # the other cases run to paid; a cancelled one does not move
    assert sim.agency.cases[cancel_id].code == CANCELLED
    assert not [u for u in sim.agency.journal if u.claim_id == cancel_id and u.kind == "payment"]
    assert sim.agency.cases[paid_id].direct_payments == [{"amount": "50.00", "date": day.isoformat()}]
    assert sim.agency.cases[paid_id].open_amount == before - Decimal("50.00")
    [collected] = [u for u in sim.agency.journal if u.claim_id == paid_id and u.kind == "payment"]
    assert Decimal(str(collected.amount)) == before - Decimal("50.00")

    assert erp.service.GetClaim(cancel_id).state == "cancelled_by_client"
    [answer] = [m for m in erp.service.GetMessages(asked_id) if m.direction == "from_partner"]
    assert answer.text == ANSWER
    # the delivery state in each claim's history: queued (the request), delivered, acknowledged
    delivered = ["instruction_delivered", "partner_ack"] if not sim.operations else ["partner_ack"]
    for cid, request in ((cancel_id, "cancel_requested"), (paid_id, "payment_reported"),
                         (asked_id, "message_sent")):
        kinds = _kinds(erp, cid)
        assert [k for k in kinds if k in (request, "instruction_delivered", "partner_ack")] == [request, *delivered]
        assert "partner_unsupported" not in kinds and "partner_op_failed" not in kinds


@pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")
@pytest.mark.parametrize("sim", ["directory"], indirect=True)
def test_instruction_document_opens_with_openssl_and_validates(sim: Harness, gw: Gateway, tmp_path: Path) -> None:
    cid = gw.handed_over(sim)[0]
    gw.erp.service.ReportDirectPayment(cid, Decimal("12.30"), date.today())
    assert gw.drain() == 1
    [document] = sorted((tmp_path / "var/partners/sim-agency/instructions").glob("*.xml.p7m"))
    [row] = [r for r in gw.outbox() if r["operation"] == "report_payment"]
    assert document.name == row["idempotency_key"].replace(":", "-") + ".xml.p7m"
    keys = tmp_path / "var/keys"
    signed, plain = tmp_path / "signed.der", tmp_path / "plain.xml"
    subprocess.run([str(OPENSSL), "cms", "-decrypt", "-inform", "DER", "-in", str(document),
                    "-recip", str(keys / "partners/sim-agency.crt"), "-inkey", str(keys / "partners/sim-agency.key"),
                    "-out", str(signed)], check=True, capture_output=True, timeout=60)
    verified = subprocess.run([str(OPENSSL), "cms", "-verify", "-inform", "DER", "-in", str(signed),
                               "-CAfile", str(gw.app.signing_cert_path), "-out", str(plain)],
                              check=True, capture_output=True, timeout=60)
    assert b"Verification successful" in verified.stderr
    xml = plain.read_bytes()
    assert validate_instruction(xml) == []
    assert b'<amount currency="EUR">12.30</amount>' in xml and f"<claimId>{cid}</claimId>".encode() in xml
    assert validate_instruction(xml.replace(b"12.30", b"-1")) != []  # the schema does check


@pytest.fixture
def deliver_only(tmp_path: Path, db_url: str, keys_template: Path) -> Iterator[Gateway]:
    partner = {"adapter": "directory", "certificate": CERT, "options": {"path": "var/partners/sim-agency"},
               "capabilities": ["deliver"]}
    yield from _gateway(tmp_path, db_url, keys_template, partner)


def test_a_partner_taking_only_deliveries_refuses_every_operation_and_queues_nothing(deliver_only: Gateway) -> None:
    cid = deliver_only.handed_over(None)[0]
    erp = deliver_only.erp
    history = _kinds(erp, cid)
    calls = {"CancelClaim": (cid, "settled"), "ReportDirectPayment": (cid, Decimal("5.00"), date.today()),
             "SendMessage": (cid, "Hallo"), "RequestLongTermMonitoring": (cid,), "RefreshClaim": (cid,)}
    for name, args in calls.items():
        with pytest.raises(zeep.exceptions.Fault) as exc:
            getattr(erp.service, name)(*args)
        assert exc.value.code.endswith("Client.Unsupported"), name
        assert exc.value.message == f"partner {PARTNER} does not accept {REFUSED[name][1]}"
    assert [r["operation"] for r in deliver_only.outbox()] == ["deliver_batch"]
    assert _kinds(erp, cid) == history  # nothing recorded: the refusal came before anything was written
    assert erp.service.GetClaim(cid).state == "handed_over"
    # labels are the client's own: kept, just not passed on
    assert erp.service.SetLabels(cid, {"Label": ["vip"]}).forwarded is False
    assert [r["operation"] for r in deliver_only.outbox()] == ["deliver_batch"]
