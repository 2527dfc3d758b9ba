"""The newcomer's path, for real: `gateway serve` as a process, the demo CSV dropped in the inbox,
an ack appears, and the partner opens the delivered batch with the openssl command line."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from lxml import etree

from gateway.services.render import validate_batch
from tests.conftest import ROOT, write_config
from tests.support import wait_for

T = TypeVar("T")
GATEWAY = [sys.executable, "-m", "gateway.entrypoints.cli"]
NS = {"b": "urn:inkasso-gateway:partner-batch:1"}


def gateway(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GATEWAY, "--config", str(cfg), *args], capture_output=True, text=True, timeout=120,
                          cwd=cfg.parent)


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    cfg = write_config(tmp_path, db_url)
    assert gateway(cfg, "keys", "init").returncode == 0
    up = gateway(cfg, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "serve"], stdout=log, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path)
    try:
        wait_for("serve to be ready", lambda: "serve.ready" in (tmp_path / "serve.log").read_text()
                 or proc.poll() is not None)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield cfg, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        log.close()


def test_demo_csv_in_inbox_to_ack_and_encrypted_batch(served: tuple[Path, subprocess.Popen[str]],
                                                      tmp_path: Path) -> None:
    cfg, proc = served
    upload = tmp_path / "inbox" / "demo" / "upload"
    # Copy under a temp name, then rename, as an SFTP client would: the temp name is never picked up.
    shutil.copy(ROOT / "examples" / "demo.csv", upload / "demo.csv.part")
    os.rename(upload / "demo.csv.part", upload / "demo.csv")

    ack = tmp_path / "inbox" / "demo" / "ack" / "demo.csv.ack.csv"
    wait_for("the ack file", ack.exists)
    with open(ack, encoding="utf-8", newline="") as fh:
        lines = list(csv.DictReader(fh, delimiter=";"))
    with open(ROOT / "examples" / "demo.csv", encoding="cp1252", newline="") as fh:
        source_rows = sum(1 for _ in csv.reader(fh, delimiter=";")) - 1
    assert len(lines) == source_rows
    accepted = {ln["Rechnungsnr"] for ln in lines if ln["outcome"] == "accepted"}
    assert accepted and any(ln["outcome"] == "rejected" for ln in lines)
    assert any(ln["outcome"] == "held" and "debtor_minor" in ln["codes"] for ln in lines)
    wait_for("the upload to leave the inbox", lambda: not (upload / "demo.csv").exists())

    partner_dir = tmp_path / "var" / "partners" / "demo-agency"
    batches = wait_for("an encrypted batch", lambda: sorted(partner_dir.glob("*.p7m")))
    assert len(batches) == 1
    assert b"<?xml" not in batches[0].read_bytes()  # encrypted, not plain XML

    keys = tmp_path / "var" / "keys"
    signed, plain = tmp_path / "signed.der", tmp_path / "batch.xml"
    subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(batches[0]),
                    "-recip", str(keys / "partners" / "demo-agency.crt"),
                    "-inkey", str(keys / "partners" / "demo-agency.key"), "-out", str(signed)],
                   check=True, capture_output=True, timeout=60)
    verify = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(signed),
                             "-CAfile", str(keys / "gateway-signing.crt"), "-out", str(plain)],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "Verification successful" in verify.stderr, verify.stderr
    assert validate_batch(plain) == []
    doc = etree.parse(str(plain), etree.XMLParser(resolve_entities=False, no_network=True))
    refs = {e.text for e in doc.iterfind(".//b:claim/b:creditorReference", NS)}
    assert refs == accepted

    def handed_over() -> list[dict[str, Any]] | None:
        out = gateway(cfg, "claims", "list", "--json", "--status", "handed_over")
        rows: list[dict[str, Any]] = json.loads(out.stdout) if out.returncode == 0 else []
        return rows if len(rows) == len(accepted) else None

    rows = wait_for("claims to be handed over", handed_over)
    claim_id = rows[0]["id"]
    hist = json.loads(gateway(cfg, "claims", "history", str(claim_id), "--json").stdout)
    assert [(e["from_state"], e["state"]) for e in hist] == [
        ("received", "queued"), ("queued", "delivering"), ("delivering", "handed_over")]
    # a file partner names the batch file, not a case: no file number until the agency's first status
    assert hist[-1]["data"]["batch_reference"].startswith("demo-agency:")
    assert "partner_reference" not in hist[-1]["data"] and rows[0]["partner_file_number"] is None

    subs = json.loads(gateway(cfg, "submissions", "list", "--json").stdout)
    assert [(s["filename"], s["status"]) for s in subs] == [("demo.csv", "completed_with_errors")]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
