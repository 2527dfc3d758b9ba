"""`gateway serve` with the SOAP endpoint on: an ERP submits over HTTPS with zeep, the claim is handed over,
and SIGTERM stops the HTTPS server with the rest."""

from __future__ import annotations

import signal
from pathlib import Path

import requests
import zeep
from zeep.transports import Transport

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway, wait_for
from tests.integration.soap.conftest import PASSWORDS, claim, client_config
from tests.support import listening_port, serve_process, wait_ready


def test_serve_runs_the_soap_endpoint(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url, clients=client_config(),
                       soap={"enabled": True, "host": "127.0.0.1", "port": 0, "changes_settle_seconds": 0})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    with serve_process(cfg) as (proc, log_path):
        wait_ready(proc, log_path)
        port = listening_port(log_path, "soap")
        assert port, log_path.read_text()
        session = requests.Session()
        session.trust_env = False
        session.verify = str(tmp_path / "var" / "keys" / "tls.crt")
        session.auth = ("demo-erp", PASSWORDS["demo-erp"])
        client = zeep.Client(f"https://127.0.0.1:{port}/soap?wsdl", transport=Transport(session=session))
        result = client.service.SubmitClaims(claims={"ClaimInput": [claim("E2E-1")]})
        cid = result.results.ClaimResult[0].claim_id
        wait_for("the claim to be handed over", lambda: client.service.GetClaim(cid).state == "handed_over")
        # the v2 contract is served next to v1 by the same process, on the same claims
        v2 = zeep.Client(f"https://127.0.0.1:{port}/soap/v2?wsdl", transport=Transport(session=session))
        (status,) = v2.service.GetClaimStatuses({"Reference": ["E2E-1"]})
        assert (status.claim_id, status.state) == (cid, "handed_over")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_path.read_text()
        assert "soap.stopped" in log_path.read_text()
