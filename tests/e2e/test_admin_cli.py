"""The admin CLI against one running `gateway serve` (SFTP and SOAP on): a client added by the CLI logs in
over SFTP (asyncssh) and SOAP (httpx) without a restart and is refused again once disabled; claims are
released and cancelled by submission; exports are formula-safe (CSV) and readable (XLSX, openpyxl);
lists say when they are cut; `status --json` parses; `ingest` prints its summary line; piping into
`head` and a missing database end without a traceback."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import httpx
import openpyxl
import pytest

from tests.conftest import PG_URL, _pg_schema_url, write_config
from tests.sftp_support import ClientKey, client_csv, make_key
from tests.support import listening_port, wait_for

GATEWAY = [sys.executable, "-m", "gateway.entrypoints.cli"]
PASSWORD = "acme-soap-password-1"


@dataclass
class Served:
    root: Path
    cfg: Path
    proc: subprocess.Popen[str]
    sftp_port: int
    soap_port: int
    key: ClientKey

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GATEWAY, "--config", str(self.cfg), *args], capture_output=True, text=True,
                              input=stdin, timeout=120, cwd=self.root)


# The admin commands go through the same use cases on both databases (those are tested on both elsewhere);
# about forty CLI processes make this module slow, so it runs once, on SQLite.
@pytest.fixture(scope="module", params=["sqlite"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp(f"admin-{request.param}")
    urls: Iterator[str]
    if request.param == "sqlite":
        urls = iter([f"sqlite:///{root / 'var' / 'gateway.db'}"])
    elif not PG_URL:
        pytest.skip("GATEWAY_TEST_PG_URL not set: PostgreSQL run skipped (CI sets it)")
    else:
        urls = _pg_schema_url()
    url = next(urls)
    # failed logins are part of the test: the per-address lockout must not end it
    cfg = write_config(root, url, sftp={"enabled": True, "port": 0, "max_auth_failures": 1000},
                       soap={"enabled": True, "host": "127.0.0.1", "port": 0})
    # an operator's comment, which the CLI must keep when it writes the file back
    cfg.write_text("# operator note: keep me\n" + cfg.read_text())
    for args in (("keys", "init"), ("db", "upgrade")):
        out = subprocess.run([*GATEWAY, "--config", str(cfg), *args], capture_output=True, text=True, timeout=120,
                             cwd=root)
        assert out.returncode == 0, out.stderr
    log_path = root / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "serve"], stdout=log, stderr=subprocess.STDOUT,
                                text=True, cwd=root)

    def ports() -> tuple[int, int] | None:
        assert proc.poll() is None, log_path.read_text()
        text = log_path.read_text()
        m = re.search(r"sftp\.listening host=\S+ port=(\d+)", text)
        soap = listening_port(log_path, "soap")
        return (int(m.group(1)), soap) if m and soap and "serve.ready" in text else None
    try:
        s = Served(root, cfg, proc, *wait_for("serve with SFTP and SOAP", ports, timeout=60),
                   make_key(root / "client-keys", "acme"))
        yield s
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()
        assert "Traceback" not in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for _ in urls:  # drops the PostgreSQL schema
            pass


def _sftp_login(s: Served, user: str = "acme") -> list[str] | None:
    async def go() -> list[str]:
        async with asyncssh.connect("127.0.0.1", s.sftp_port, username=user, client_keys=[str(s.key.private)],
                                    known_hosts=None, agent_path=None, password=None) as conn:
            async with conn.start_sftp_client() as sftp:
                return sorted(await sftp.listdir("/"))
    try:
        return asyncio.run(go())
    except (asyncssh.PermissionDenied, asyncssh.DisconnectError):
        return None


def _soap_status(s: Served, password: str = PASSWORD) -> int:
    """HTTP status of a GetChanges call: 200 when the login is taken, 401 when it is refused."""
    body = ('<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:g="urn:inkasso-gateway:soap:v1"><soapenv:Body><g:GetChanges><g:cursor>0</g:cursor>'
            '</g:GetChanges></soapenv:Body></soapenv:Envelope>')
    tls = ssl.create_default_context(cafile=str(s.root / "var" / "keys" / "tls.crt"))
    with httpx.Client(verify=tls, trust_env=False, timeout=30) as client:
        r = client.post(f"https://127.0.0.1:{s.soap_port}/soap", content=body, auth=("acme", password),
                        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
    return r.status_code


def test_a_client_added_by_the_cli_logs_in_over_sftp_and_soap_without_restart(served: Served) -> None:
    s = served
    assert _sftp_login(s) is None and _soap_status(s) == 401  # not a client yet
    pub = s.root / "client-keys" / "acme.pub"
    pub.write_text(s.key.public_line + "\n")
    out = s.cli("clients", "add", "acme", "--name", "Acme GmbH", "--mapping", "demo", "--default-partner",
                "demo-agency", "--hold-all", "--key", str(pub))
    assert out.returncode == 0, out.stderr
    out = s.cli("clients", "set-password", "acme", "--soap", "--password-stdin", stdin=PASSWORD + "\n")
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout + out.stderr and PASSWORD not in s.cfg.read_text()
    assert s.cfg.read_text().startswith("# operator note: keep me\n")
    assert (s.cfg.parent / (s.cfg.name + ".bak")).exists()

    # one reload takes both: SOAP logins are swapped before SFTP's, so once SFTP lets acme in, SOAP does
    # too (SOAP is asked only once each time: failed SOAP logins are throttled)
    folders = wait_for("acme's SFTP login", lambda: _sftp_login(s))
    assert {"upload", "ack", "status", "archive"} <= set(folders)
    assert _soap_status(s) == 200
    assert _soap_status(s, "wrong-password-123") == 401
    show = json.loads(s.cli("clients", "show", "acme", "--json").stdout)
    assert show["soap_username"] == "acme" and show["soap_password"] and len(show["sftp_keys"]) == 1

    assert s.cli("clients", "disable", "acme").returncode == 0
    wait_for("acme's SFTP login refused", lambda: _sftp_login(s) is None)
    assert _soap_status(s) == 401
    assert s.cli("clients", "enable", "acme").returncode == 0
    wait_for("acme's SFTP login again", lambda: _sftp_login(s))
    log = (s.root / "serve.log").read_text()
    assert "config.reloaded" in log and "config.reload_failed" not in log and PASSWORD not in log


@pytest.fixture(scope="module")
def acme_runs(served: Served) -> tuple[str, str]:
    """Two acme files ingested by the CLI (every claim held: hold_all); their submission references."""
    s = served
    if "acme" not in s.cfg.read_text():  # the first test did not run
        assert s.cli("clients", "add", "acme", "--name", "Acme", "--mapping", "demo", "--default-partner",
                     "demo-agency", "--hold-all").returncode == 0
    refs = []
    for name, n, prefix in (("first.csv", 150, "=cmd|' /C calc'!A"), ("second.csv", 30, "B")):
        out = s.cli("ingest", str(client_csv(s.root / name, n, prefix)), "--client", "acme", "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["held"] == n
        # not a terminal: no progress line drawn, one summary line with rows and rows/s
        assert re.search(rf"^{name}: {n} rows, [\d,]+ rows/s, [\d.]+ s$", out.stderr, re.M), out.stderr
        assert "\r" not in out.stderr
        refs.append(doc["submission"])
    return refs[0], refs[1]


def test_release_and_cancel_by_submission(served: Served, acme_runs: tuple[str, str]) -> None:
    first, second = acme_runs
    out = served.cli("claims", "cancel", "--submission", second, "--json")
    assert out.returncode == 0, out.stderr
    assert {d["result"] for d in json.loads(out.stdout)["done"]} == {"cancelled_by_client"}
    cancelled = json.loads(served.cli("claims", "list", "--client", "acme", "--status", "cancelled_by_client",
                                      "--json").stdout)
    assert len(cancelled) == 30
    out = served.cli("claims", "release", "--submission", first)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("150 claim(s) released, 0 skipped")
    # delivered by the running serve
    wait_for("acme's claims handed over", lambda: len(json.loads(served.cli(
        "claims", "list", "--client", "acme", "--status", "handed_over", "--limit", "500", "--json").stdout)) == 150,
        timeout=60)
    again = served.cli("claims", "cancel", "--submission", second)
    assert again.returncode == 5 and "skipped" in again.stdout  # already final: each listed with why


def test_exports_are_formula_safe_and_readable(served: Served, acme_runs: tuple[str, str]) -> None:
    s = served
    out = s.cli("claims", "export", "--client", "acme", "--submission", acme_runs[0])
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout), delimiter=";"))
    assert len(rows) == 150 and "debtor_name" not in rows[0]
    assert all(r["creditor_reference"].startswith("'=cmd|") for r in rows)
    assert "without personal data" in out.stderr
    path = s.root / "acme.xlsx"
    out = s.cli("claims", "export", "--client", "acme", "--with-personal-data", "--output", str(path))
    assert out.returncode == 0 and "WITH personal data" in out.stderr
    book = openpyxl.load_workbook(path, read_only=True)
    about = {r[0]: r[1] for r in book["about"].iter_rows(values_only=True)}
    assert about["personal data"] == "included (decrypted)" and about["claims"] == "180"
    sheet = list(book["claims"].iter_rows(values_only=True))
    header, data = sheet[0], sheet[1:]
    ref, name = header.index("creditor_reference"), header.index("debtor_name")
    assert len(data) == 180 and all(r[name] for r in data)
    assert sum(1 for r in data if str(r[ref]).startswith("'=cmd|")) == 150  # text, never a formula
    book.close()


def test_lists_say_when_cut_and_page(served: Served, acme_runs: tuple[str, str]) -> None:
    out = served.cli("claims", "list", "--client", "acme", "--limit", "10")
    assert out.returncode == 0
    assert "showing 10 of 180, use --limit/--offset" in out.stderr
    assert len(out.stdout.splitlines()) == 11
    out = served.cli("claims", "list", "--client", "acme", "--limit", "10", "--offset", "175", "--json")
    assert len(json.loads(out.stdout)) == 5 and "showing 176-180 of 180" in out.stderr
    out = served.cli("submissions", "list", "--client", "acme")
    assert "showing" not in out.stderr  # everything shown: nothing said
    assert "showing 1 of 2" in served.cli("submissions", "list", "--client", "acme", "--limit", "1").stderr


def test_status_json_parses(served: Served, acme_runs: tuple[str, str]) -> None:
    out = served.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc["outbox"]) == {"pending", "leased", "dead", "oldest_pending_seconds"}
    clients = {c["client"]: c for c in doc["clients"]}
    assert clients["acme"]["last_file"] == "second.csv"
    assert any(p["partner"] == "demo-agency" for p in doc["partners"])
    assert "outbox:" in served.cli("status").stdout


def test_piping_into_head_and_a_missing_database_end_quietly(served: Served, acme_runs: tuple[str, str],
                                                           tmp_path: Path) -> None:
    # more than a pipe buffer (64 KiB) of output, so the CLI is still writing when head has gone
    out = served.cli("ingest", str(client_csv(tmp_path / "many.csv", 1500, "M")), "--client", "demo")
    assert out.returncode == 0, out.stderr
    cmd = " ".join([*GATEWAY, "--config", str(served.cfg), "claims", "list", "--limit", "5000"])
    out = subprocess.run(f"{cmd} | head -1", shell=True, capture_output=True, text=True, timeout=60,
                         cwd=served.root)
    assert out.stdout.startswith("ID") and len(out.stdout.splitlines()) == 1
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    # a config whose database does not exist: refused with one line, and nothing is created
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}")
    out = subprocess.run([*GATEWAY, "--config", str(cfg), "claims", "list"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 1 and "run `gateway db upgrade` first" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "var" / "gateway.db").exists()
    out = subprocess.run([*GATEWAY, "--config", str(tmp_path / "missing.yaml"), "status"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 1 and "cannot read config" in out.stderr and "Traceback" not in out.stderr
