"""A client's sandbox end to end: `gateway serve` with SOAP and SFTP, a sandbox SOAP login (zeep), a sandbox
SFTP login (OpenSSH `sftp`) and the watched inbox folder of the client `demo`, the simulated sandbox agency and
the client's real partner (a directory partner with its own simulated agency, standing in for the real one).

Sandbox claims reach the sandbox agency and move through the scenarios their references and memos ask for;
the real partner receives only the production claim; production lists, exports, submissions and the
production change feed never show a sandbox claim; the sandbox ack is marked.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from zeep.transports import Transport

from adapters.simulators.agency import STATUS_MAP
from gateway.bootstrap import build_app
from gateway.entrypoints import cli
from gateway.config import load_config
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.e2e.test_sftp_serve import Served
from tests.integration.soap.conftest import cheap_hash, claim
from tests.sftp_support import ClientKey, client_csv, make_key, openssh_batch, wait_for
from tests.support import listening_port

PROD_PW, SBX_PW = "production password 1", "sandbox password 22"


def sandbox_config(key: ClientKey) -> dict[str, Any]:
    """The client ``demo`` with a production and a sandbox SOAP login and a sandbox SFTP login."""
    return {
        "clients": {"demo": {
            "name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
            "soap": {"credentials": [{"username": "demo-erp", "password_hash": cheap_hash(PROD_PW)},
                                     {"username": "demo-test", "password_hash": cheap_hash(SBX_PW),
                                      "sandbox": True}]},
            "sandbox": {"sftp": {"authorized_keys": [key.public_line]}}}},
        "partners": {
            "demo-agency": {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
                            "options": {"path": "var/partners/demo-agency"}, "status_map": STATUS_MAP,
                            "sync": {"every_seconds": 0.2}, "simulator": {"enabled": True, "step_seconds": 0.25}},
            "sandbox": {"adapter": "directory", "certificate": "var/keys/partners/sandbox.crt",
                        "options": {"path": "var/partners/sandbox"}, "sandbox": True,
                        "sync": {"every_seconds": 0.2}, "simulator": {"enabled": True, "step_seconds": 0.25}}},
    }


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[tuple[Served, ClientKey]]:
    key = make_key(tmp_path / "client-keys", "sandbox")
    cfg = write_config(tmp_path, db_url, sftp={"enabled": True, "port": 0, "status_interval_seconds": 1},
                       soap={"enabled": True, "host": "127.0.0.1", "port": 0, "changes_settle_seconds": 0},
                       web={"enabled": False}, **sandbox_config(key))
    init_keys(load_config(cfg))  # in-process: two CLI start-ups fewer
    build_app(cfg, migrate=True).close()
    s = Served(tmp_path, cfg)
    try:
        yield s, key
    finally:
        if s.proc is not None and s.proc.poll() is None:
            s.stop()


def _client(tmp_path: Path, port: int, user: str, password: str, marks: list[str | None]) -> zeep.Client:
    """A zeep client; ``marks`` collects each answer's sandbox header."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tmp_path / "var" / "keys" / "tls.crt")
    session.auth = (user, password)
    session.hooks["response"].append(lambda r, *args, **kwargs: marks.append(r.headers.get("X-Inkasso-Sandbox"))
                                     if "wsdl" not in r.url else None)
    return zeep.Client(f"https://127.0.0.1:{port}/soap?wsdl", transport=Transport(session=session))


def _cli(cfg: Path, *args: str) -> str:
    """The ``gateway`` command's main, in this process (an interpreter start-up each costs seconds here)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["--config", str(cfg), *args]) == 0
    return out.getvalue()


def _cases(tmp_path: Path, partner: str) -> set[int]:
    """Claim ids the partner's simulated agency opened a case for (its books on disk)."""
    books = tmp_path / "var" / "partners" / partner / "agency-state.json"
    return {c["claim_id"] for c in json.loads(books.read_text())["cases"]} if books.exists() else set()


EXPECTED = {"SBX-UNCOLLECTIBLE-1": "closed_uncollectible", "SBX-DISPUTED-1": "disputed",
            "SBX-RECEIVED-1": "handed_over", "T-INST-1": "closed_paid", "T-PAID-1": "closed_paid",
            "P-1": "closed_paid"}


def test_sandbox_claims_reach_only_the_simulated_agency_and_stay_out_of_production(
        served: tuple[Served, ClientKey], tmp_path: Path) -> None:
    s, key = served
    sftp_port = s.start()
    port = listening_port(s.log_path, "soap")
    assert port, s.log_path.read_text()
    prod_marks: list[str | None] = []
    sbx_marks: list[str | None] = []
    prod = _client(tmp_path, port, "demo-erp", PROD_PW, prod_marks)
    sbx = _client(tmp_path, port, "demo-test", SBX_PW, sbx_marks)

    sandbox_claims = [claim(ref) for ref in EXPECTED if ref != "T-INST-1"]
    sandbox_claims.append(claim("T-INST-1", memo="please play sandbox:instalments"))
    answer = sbx.service.SubmitClaims(claims={"ClaimInput": sandbox_claims})
    ids = {r.creditor_reference: r.claim_id for r in answer.results.ClaimResult}
    assert set(ids) == set(EXPECTED) and all(r.outcome == "accepted" for r in answer.results.ClaimResult)
    assert answer.submission.startswith("SBX")
    # the same reference in production is another claim: the sandbox never blocks a real one
    prod_answer = prod.service.SubmitClaims(claims={"ClaimInput": [claim("P-1")]})
    prod_id = prod_answer.results.ClaimResult[0].claim_id
    assert prod_answer.results.ClaimResult[0].outcome == "accepted" and prod_id not in ids.values()

    upload = client_csv(tmp_path / "sbx-run.csv", 3, "SBX-COURT")
    out = openssh_batch(sftp_port, key.private, "demo.sandbox", [f"put {upload} /upload/{upload.name}"],
                        tmp_path / "known_hosts")
    assert out.returncode == 0, out.stderr
    ack = tmp_path / "inbox" / "demo.sandbox" / "ack" / "sbx-run.csv.ack.csv"
    wait_for("the sandbox ack", ack.exists)
    with open(ack, encoding="utf-8") as fh:
        ack_rows = list(csv.reader(fh, delimiter=";"))
    assert ack_rows[1][2] == "sandbox" and "SANDBOX" in ack_rows[1][5]
    sftp_ids = [int(r[3]) for r in ack_rows[2:] if r[2] == "accepted"]
    assert len(sftp_ids) == 3
    # a file dropped into the sandbox's watched inbox folder (not over SFTP) goes the same way
    dropped = client_csv(tmp_path / "dropped.csv", 2, "SBX-PAID-W")
    os.replace(dropped, tmp_path / "inbox" / "demo.sandbox" / "upload" / "dropped.csv")
    dropped_ack = tmp_path / "inbox" / "demo.sandbox" / "ack" / "dropped.csv.ack.csv"
    wait_for("the dropped file's ack", dropped_ack.exists)
    with open(dropped_ack, encoding="utf-8") as fh:
        drop_rows = list(csv.reader(fh, delimiter=";"))
    assert drop_rows[1][2] == "sandbox"
    sftp_ids += [int(r[3]) for r in drop_rows[2:] if r[2] == "accepted"]
    assert len(sftp_ids) == 5

    def states() -> dict[str, str]:
        return {ref: sbx.service.GetClaim(cid).state for ref, cid in ids.items()}

    wait_for("every sandbox scenario to end", lambda: states() == EXPECTED or None, 60)
    wait_for("the SFTP claims to play 'court' to the end",
             lambda: all(sbx.service.GetClaim(c).state == "closed_paid" for c in sftp_ids) or None, 60)
    court = [e.state for e in sbx.service.GetClaimHistory(sftp_ids[0])]
    assert "in_progress" in court and court[-1] == "closed_paid"
    inst = sbx.service.GetClaimHistory(ids["T-INST-1"])
    assert "instalment_plan" in [e.state for e in inst]
    wait_for("the production claim to be paid at the real partner",
             lambda: prod.service.GetClaim(prod_id).state == "closed_paid" or None, 60)

    # the real partner's agency got the production claim and nothing else
    assert _cases(tmp_path, "demo-agency") == {prod_id}
    assert _cases(tmp_path, "sandbox") == set(ids.values()) | set(sftp_ids)
    # each login sees only its own side
    with pytest.raises(zeep.exceptions.Fault):
        prod.service.GetClaim(ids["T-PAID-1"])
    prod_feed = prod.service.GetChanges(0, 500)
    assert {e.claim_id for e in prod_feed.events.Event} == {prod_id}
    sbx_feed = sbx.service.GetChanges(0, 500)
    assert prod_id not in {e.claim_id for e in sbx_feed.events.Event}

    # the operator's production lists and exports leave the sandbox out
    listed = json.loads(_cli(s.cfg, "claims", "list", "--json"))
    assert [c["creditor_reference"] for c in listed] == ["P-1"]
    sandboxes = json.loads(_cli(s.cfg, "claims", "list", "--sandbox", "--limit", "500", "--json"))
    assert {c["id"] for c in sandboxes} == set(ids.values()) | set(sftp_ids)
    export = tmp_path / "export.csv"
    _cli(s.cfg, "claims", "export", "--output", str(export))
    exported = export.read_text(encoding="utf-8")
    assert "P-1" in exported and "SBX-" not in exported and "T-PAID-1" not in exported
    subs = json.loads(_cli(s.cfg, "submissions", "list", "--json"))
    assert [x["client_id"] for x in subs] == ["demo"]
    assert sbx_marks and set(sbx_marks) == {"true"}  # every SOAP answer to the sandbox login is marked
    assert prod_marks and set(prod_marks) == {None}
    assert s.stop() == 0
    # no debtor data in what the gateway wrote about these claims (the log, acks, status files)
    inbox = tmp_path / "inbox"
    written = [*tmp_path.glob("serve-*.log"), *inbox.glob("*/ack/*"), *inbox.glob("*/status/*")]
    sbx_status = [p.read_text(encoding="utf-8") for p in inbox.glob("demo.sandbox/status/*.csv")]
    assert any("SANDBOX" in text for text in sbx_status)
    assert not any("SANDBOX" in p.read_text(encoding="utf-8") for p in inbox.glob("demo/status/*.csv"))
    for path in written:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "Müller" not in text and "j.mueller@example.org" not in text, path
