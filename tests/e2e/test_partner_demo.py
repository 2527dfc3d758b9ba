"""`gateway serve` with a simulated agency, as `make run` starts it: claims go to in_progress and paid,
pulled from the directory partner's status files, or pushed to the webhook of an http partner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from adapters.base import PartnerUpdate, encode_updates
from adapters.rest import SIGNATURE_HEADER, sign_body
from adapters.simulators.agency import STATUS_MAP
from tests.conftest import ROOT, write_config
from tests.e2e.test_serve_demo import GATEWAY, gateway, wait_for

SECRET = "demo-webhook-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(tmp_path: Path, cfg: Path) -> Iterator[subprocess.Popen[str]]:
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "serve"], stdout=log, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path, env={**os.environ, "DEMO_WEBHOOK_SECRET": SECRET})
    try:
        wait_for("serve to be ready", lambda: "serve.ready" in (tmp_path / "serve.log").read_text()
                 or proc.poll() is not None)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        log.close()


def drop_demo(tmp_path: Path) -> None:
    upload = tmp_path / "inbox" / "demo" / "upload"
    shutil.copy(ROOT / "examples" / "demo.csv", upload / "demo.csv.part")
    os.rename(upload / "demo.csv.part", upload / "demo.csv")


def claims_in(cfg: Path, status: str, n: int) -> list[dict[str, Any]] | None:
    out = gateway(cfg, "claims", "list", "--json", "--status", status)
    rows: list[dict[str, Any]] = json.loads(out.stdout) if out.returncode == 0 else []
    return rows if len(rows) == n else None


def test_directory_demo_partner_takes_claims_to_in_progress_and_paid(tmp_path: Path, db_url: str) -> None:
    partner = {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
               "options": {"path": "var/partners/demo-agency"}, "status_map": STATUS_MAP,
               "sync": {"every_seconds": 0.3}, "simulator": {"enabled": True, "step_seconds": 1.0}}
    cfg = write_config(tmp_path, db_url, partners={"demo-agency": partner})
    for proc in serve(tmp_path, cfg):
        drop_demo(tmp_path)
        wait_for("claims in progress at the agency", lambda: claims_in(cfg, "in_progress,closed_paid", 7), 60)
        paid = wait_for("claims paid", lambda: claims_in(cfg, "closed_paid", 7), 60)
        hist = json.loads(gateway(cfg, "claims", "history", str(paid[0]["id"]), "--json").stdout)
        moves = [(e["from_state"], e["state"]) for e in hist if e["from_state"] != e["state"]]
        assert moves[-3:] == [("delivering", "handed_over"), ("handed_over", "in_progress"),
                              ("in_progress", "closed_paid")]
        assert "partner_payment" in [e["kind"] for e in hist]
        status_files = sorted((tmp_path / "var/partners/demo-agency/status").glob("*.json"))
        assert status_files  # the agency answered in files, as a file-based partner does
        sync = gateway(cfg, "partners", "sync", "--json")
        assert sync.returncode == 0 and json.loads(sync.stdout)[0]["partner"] == "demo-agency"


def test_http_partner_pushes_signed_updates_to_the_webhook(tmp_path: Path, db_url: str) -> None:
    api, hook = free_port(), free_port()
    partner = {"adapter": "http", "certificate": "var/keys/partners/demo-agency.crt",
               "options": {"url": f"http://127.0.0.1:{api}", "timeout": 5}, "status_map": STATUS_MAP,
               "sync": {"enabled": False},
               "webhook": {"listen": f"127.0.0.1:{hook}", "secret_env": "DEMO_WEBHOOK_SECRET"},
               "simulator": {"enabled": True, "step_seconds": 1.0}}
    cfg = write_config(tmp_path, db_url, partners={"demo-agency": partner})
    for proc in serve(tmp_path, cfg):
        # Forged updates first: unsigned and wrongly signed pushes are refused and change nothing.
        forged = encode_updates([PartnerUpdate(update_id="x-1", claim_id=1, kind="status", code="BEZAHLT")])
        assert httpx.post(f"http://127.0.0.1:{hook}/", content=forged).status_code == 401
        bad = {SIGNATURE_HEADER: sign_body(b"wrong secret", forged)}
        assert httpx.post(f"http://127.0.0.1:{hook}/", content=forged, headers=bad).status_code == 401
        drop_demo(tmp_path)
        paid = wait_for("claims paid through pushed updates", lambda: claims_in(cfg, "closed_paid", 7), 60)
        hist = json.loads(gateway(cfg, "claims", "history", str(paid[0]["id"]), "--json").stdout)
        receipt = next(e for e in hist if e["kind"] == "receipt")
        assert receipt["data"]["partner_reference"].startswith("AZ-demo-agency-")  # the agency's file number
        assert [e["state"] for e in hist if e["kind"] == "partner_status"][-1] == "closed_paid"
        good = {SIGNATURE_HEADER: sign_body(SECRET.encode(), forged)}
        again = httpx.post(f"http://127.0.0.1:{hook}/", content=forged, headers=good)
        assert again.status_code == 200 and again.json()["received"] == 1
