"""A planted-value sweep: distinctive debtor data and a SOAP password go through every failure path a client
can reach cheaply (a file without a header row, a bad IBAN, a minor, an impossible date, a text over the
limit, an unreadable file, a duplicate, a SOAP schema fault, a crash and resume, a link), through
`gateway -v serve` on SQLite and PostgreSQL. Afterwards none of them may be found in the DEBUG log, in the
database (SQLite file and its WAL; on PostgreSQL the error and finding columns), in any file under var/,
or in another client's folder; only the client's own ack may quote its values. Every file under var/ and
inbox/ is private to the gateway's user (certificates, public by nature, aside)."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
from pathlib import Path

import requests
import zeep
from lxml import etree
from sqlalchemy import text
from zeep.transports import Transport

from gateway.bootstrap import build_app
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx, write_tx
from tests.conftest import ROOT, write_config
from tests.e2e.test_serve_demo import GATEWAY, gateway
from tests.integration.soap.conftest import claim, client_config, cheap_hash
from tests.support import wait_for

HEADER = (ROOT / "examples" / "demo.csv").read_bytes().split(b"\n", 1)[0].decode("windows-1252").strip()
NAME, FIRST, EMAIL = "Quetzalwurm", "Zacharias", "zq.planted@example.org"
BAD_IBAN, BIRTH, MINOR, BAD_DATE = "DE00123412341234123412", "23.04.1962", "05.06.2015", "31.02.1962"
SOAP_PASSWORD = "planted soap pw 4711"
PLANTED = [NAME, FIRST, EMAIL, BAD_IBAN, "1962-04-23", BIRTH, MINOR, "2015-06-05", BAD_DATE, SOAP_PASSWORD,
           base64.b64encode(f"demo-erp:{SOAP_PASSWORD}".encode()).decode()]


def row(ref: str, *, name: str = NAME, birth: str = BIRTH, email: str = EMAIL, iban: str = BAD_IBAN) -> str:
    return (f"{ref};K-1;Herr;{FIRST};{name};;{birth};Hauptstr;1;50667;Koeln;DE;{email};;{iban};"
            "15.01.2025;29.01.2025;10,00;;;")


def drop(upload: Path, name: str, data: bytes) -> None:
    """Like a client's upload: written under a temp name, renamed when whole."""
    tmp = upload / f"{name}.part"
    tmp.write_bytes(data)
    tmp.rename(upload / name)


def found_in(data: bytes) -> list[str]:
    return [v for v in PLANTED if v.encode() in data or v.encode("utf-16-le") in data]


def _soap(port: int, cert: Path) -> tuple[zeep.Client, requests.Session]:
    session = requests.Session()
    session.trust_env, session.verify, session.auth = False, str(cert), ("demo-erp", SOAP_PASSWORD)
    return zeep.Client(f"https://127.0.0.1:{port}/soap?wsdl", transport=Transport(session=session)), session


def test_planted_values_appear_only_in_the_clients_own_ack(tmp_path: Path, db_url: str) -> None:
    clients = client_config()
    clients["demo"]["soap"]["password_hash"] = cheap_hash(SOAP_PASSWORD)
    cfg = write_config(tmp_path, db_url, clients=clients, watcher={"stable_seconds": 0.1, "sweep_seconds": 0.5},
                       soap={"enabled": True, "host": "127.0.0.1", "port": 0, "changes_settle_seconds": 0})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    # What a crash in the middle of an ingest leaves: a processing submission, resumed at start-up.
    crashed = f"{HEADER}\n{row('CR-1')}\n{row('CR-2', birth=BAD_DATE)}\n".encode("windows-1252")
    app = build_app(cfg)
    try:
        with write_tx(app.engine) as conn:
            sub = sub_store.create(conn, client_id="demo", channel="watch", filename="crashed.csv", sha256="d" * 64,
                                   size=len(crashed), dedupe=True)
            assert sub is not None
            sub_store.store_payload(conn, app.cipher, sub["id"], [crashed])
    finally:
        app.close()

    logs, procs = [tmp_path / "serve-1.log", tmp_path / "serve-2.log"], []

    def serve(log_path: Path) -> subprocess.Popen[str]:
        with open(log_path, "w") as log:
            proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "-v", "serve"], stdout=log,
                                    stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
        procs.append(proc)
        wait_for("serve to be ready", lambda: "serve.ready" in log_path.read_text() or proc.poll() is not None, 60)
        assert proc.poll() is None, log_path.read_text()
        return proc

    inbox, var = tmp_path / "inbox", tmp_path / "var"
    upload, acks = inbox / "demo" / "upload", inbox / "demo" / "ack"
    try:
        proc = serve(logs[0])
        # an ephemeral port, read back from the log: a port picked free beforehand may be taken by a parallel test
        found = re.search(r"soap\.listening url=https://127\.0\.0\.1:(\d+)/", logs[0].read_text())
        assert found, logs[0].read_text()
        port = int(found.group(1))
        wait_for("the resumed submission's ack", lambda: (acks / "crashed.csv.ack.csv").exists())
        rows = "\n".join([row("PII-1"), row("PII-2", iban="DE89370400440532013000", birth=MINOR),
                          row("PII-3", iban="DE89370400440532013000", birth=BAD_DATE),
                          row("PII-4", iban="DE89370400440532013000", name=NAME * 30),
                          row("PII-5", iban="DE89370400440532013000", email=f"{NAME}@"), row("PII-1")])
        files = {"rows.csv": f"{HEADER}\n{rows}\n".encode("windows-1252"),
                 "noheader.csv": f"{row('NH-1')}\n{row('NH-2')}\n".encode("windows-1252"),
                 "binary.csv": b"PK\x03\x04" + NAME.encode() + bytes(range(256)),
                 "badbyte.csv": f"{HEADER}\n{row('BB-1')}\n".encode("windows-1252") + b"\x81" + NAME.encode()}
        for name, data in files.items():
            drop(upload, name, data)
        outside = tmp_path / "outside.csv"
        outside.write_bytes(files["rows.csv"].replace(b"PII-", b"OUT-"))
        (upload / "leak.csv").symlink_to(outside)
        wait_for("an ack for every file", lambda: all((acks / f"{n}.ack.csv").exists() for n in [*files, "leak.csv"]))
        drop(upload, "again.csv", files["rows.csv"])  # the same bytes: a duplicate file
        wait_for("the duplicate's ack", lambda: (acks / "again.csv.ack.csv").exists())

        client, session = _soap(port, var / "keys" / "tls.crt")
        result = client.service.SubmitClaims(claims={"ClaimInput": [claim("SOAP-1", debtor={
            "last_name": NAME, "first_name": FIRST, "birth_date": "1962-04-23",
            "emails": {"Email": [EMAIL]}, "bank_accounts": {"BankAccount": [{"iban": BAD_IBAN}]}})]})
        assert result.results.ClaimResult[0].outcome == "rejected"
        envelope = client.create_message(client.service, "SubmitClaims", claims={"ClaimInput": [
            claim("SOAP-2", debtor={"last_name": NAME, "birth_date": "1962-04-23"})]})
        body = etree.tostring(envelope).replace(b">1962-04-23<", f">{FIRST}-{BIRTH}<".encode())
        # a birth date that breaks the schema rejects that claim alone, naming the field, never the value
        unfit = session.post(f"https://127.0.0.1:{port}/soap", data=body,
                             headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"SubmitClaims"'})
        assert unfit.status_code == 200 and b"<tns:code>invalid_date</tns:code>" in unfit.content, unfit.content[:500]
        assert f"{FIRST}-{BIRTH}".encode() not in unfit.content
        wrong = requests.post(f"https://127.0.0.1:{port}/soap", data=body, verify=str(var / "keys" / "tls.crt"),
                              auth=("demo-erp", SOAP_PASSWORD + "x"), headers={"Content-Type": "text/xml"})
        assert wrong.status_code == 401

        if db_url.startswith("sqlite"):  # the database file and its WAL while serve writes to them
            for p in var.iterdir():
                if p.name.startswith("gateway.db"):
                    assert found_in(p.read_bytes()) == [], p
        proc.send_signal(signal.SIGKILL)  # a crash, then a restart that resumes whatever was open
        proc.wait(30)
        proc = serve(logs[1])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, logs[1].read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    # A file without a header: its first data row is described in the ack (how many cells, how many look like
    # data), not quoted: an ack's findings carry no debtor data either.
    noheader = (acks / "noheader.csv.ack.csv").read_text(encoding="utf-8")
    assert NAME not in noheader and "as in a data row" in noheader, noheader
    leak = (acks / "leak.csv.ack.csv").read_text(encoding="utf-8")
    assert "link_refused" in leak and "OUT-" not in leak
    log_text = "\n".join(p.read_text() for p in logs)
    assert "DEBUG" in log_text and "ingest.failed" in log_text and "soap.fault" in log_text
    assert found_in(log_text.encode()) == [], [ln for ln in log_text.splitlines() if found_in(ln.encode())][:5]
    leaks = {str(p.relative_to(tmp_path)): found_in(p.read_bytes())
             for base in (var, inbox) for p in base.rglob("*")
             if p.is_file() and not p.is_relative_to(acks)}
    assert {k: v for k, v in leaks.items() if v} == {}
    app = build_app(cfg)
    try:
        with read_tx(app.engine) as conn:
            stored = [r for q in ("SELECT error FROM submissions", "SELECT message FROM submission_findings")
                      for (r,) in conn.execute(text(q)) if r]
    finally:
        app.close()
    assert any("header" in s for s in stored) and any("e-mail" in s for s in stored)
    assert found_in("\n".join(stored).encode()) == [] and str(tmp_path) not in "\n".join(stored)
    if db_url.startswith("sqlite"):
        loose = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777)
                 for base in (var, inbox) for p in [base, *base.rglob("*")]
                 if p.stat().st_mode & 0o077 and p.suffix != ".crt"}
        assert loose == {}, "readable by group or others"
        assert oct(os.stat(var / "keys").st_mode & 0o777) == "0o700"
