"""Unattended operation under faults: `gateway serve` killed again and again while files arrive.

    .venv/bin/python -m bench.soak [--seconds 180] [--db URL] [--seed 1] [--partner directory|http]
                                   [--intake inbox|sftp|soap] [--nodes N] [--cut-db] [--pause] [--xlsx]

A real `gateway serve` (a subprocess, the demo client) takes a stream of client files: dropped into its
watched inbox, or put over its SFTP server, half with OpenSSH's `sftp` and half slowly with asyncssh (a put
that breaks off or finds nobody listening is tried again, as a client's upload job does), with ``--xlsx`` one
in four an XLSX sheet (read in the reader's child process: the node waits for it when a kill or a freeze lands);
or, with
``--intake soap``, SubmitClaims calls of 1, 10 or 50 claims over HTTPS with zeep, each sent again until it is
answered (a kill may take the answer of a call whose claims were stored: the resend must name the same claims),
and beside them, from the same address, six clients sending calls of 600 claims (about 350 KB) together, with
``Expect: 100-continue`` and a body that takes a second to send: more bodies under way than the address's 4
body-wait slots, so large ones wait in the SOAP front's waiting room (the report counts 100s that took over
0.5 s, and Server.Busy answers). Meanwhile a chaos thread kills the gateway with
SIGKILL every 3-12 s, whatever it is doing (now and then a SIGTERM instead), and starts it again. With
``--nodes N`` (PostgreSQL, inbox) N serve processes share the database and the inbox; a random one is killed
each time, and one kill in three keeps that node down for 1.2-2.5x its leases (10 s here), so that the others
must take over its client's ingest and its outbox rows rather than the node taking them back itself. With
``--pause`` half of the faults (the first one always) freeze a node instead (SIGSTOP, as a VM freeze, a long GC pause or a closed laptop
lid do) for 1.2-2.5x its leases and then let it go on (SIGCONT): it wakes up in the middle of whatever it was
doing (a partner call, a chunk, an ack) with its leases expired and, with several nodes, taken over by another,
and must neither record a second outcome nor write a second ack. After ``--seconds`` it is left to finish; then
the invariants are checked:

- every file has one submission, completed, and one ack with a line per row;
- every row is one claim (references unique), and no claim is left queued, delivering or failed; every
  SubmitClaims answer names the claim stored under its reference;
- the partner has every claim exactly once: the directory partner's folder holds each in exactly one batch
  file (opened with the partner's key); the HTTP partner (the simulated agency, run in this process so that it
  outlives the gateway's kills) made exactly one case of each. No outbox row is dead;
- no supervised task gave up, no traceback is in serve's log (a crash or an internal error: the report counts
  ERROR and CRITICAL lines by event besides), and the largest serve process stayed within ``limits.memory_mb``.

With ``--partner http`` the chaos thread also hurts the partner now and then: a few requests answered 500 or
503 (half of the 503s with ``Retry-After: 1-4``: every row of the partner is held that long), dropped, timed out
or processed without an answer (the gateway must send again and the agency fold the copy), or an outage of a
few seconds. The directory partner is the plain one, without the demo agency
simulator (which keeps its whole books in one JSON file rewritten on every change: fine for a demo, and it
would make this a benchmark of the simulator).

On PostgreSQL the run works in a schema of its own (``soak_<pid>_<seed>``; unless the URL sets a search_path),
dropped at the end unless the run failed or ``--keep`` was given (then the report names it).

serve is started again after every kill from the code as it is then: run the soak from a tree nobody edits
meanwhile (``git archive HEAD`` unpacked elsewhere, with ``PYTHONPATH`` set to it), or a change landing in the
middle (a new migration: every later start refuses the schema) ends the run in findings that are not.

Prints one JSON line with the counts and exits non-zero when an invariant fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncssh

from adapters.simulators.agency import Agency, Fault
from adapters.simulators.files import claim_ids_of, load_partner_keys
from adapters.simulators.http_sim import HttpAgencySimulator, _Handler
from bench.gen import HEADER, rows

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = [str(Path(sys.executable).parent / "gateway")]
END_STATES = {"queued", "delivering", "failed", "received"}
LEASE_SECONDS = 10.0  # node and outbox leases with several nodes


def _config(base: Path, db_url: str, partner: dict[str, Any], **extra: Any) -> Path:
    from tests.conftest import write_config  # the tests' gateway: the demo client and mapping, loopback only

    # outages here last seconds: enough attempts that none is given up while the partner is down
    dispatcher = {"backoff_base_seconds": 0.05, "backoff_max_seconds": 1.0, "max_attempts": 100,
                  **extra.pop("dispatcher", {})}
    return write_config(base, db_url, gateway_id="gw-soak", dispatcher=dispatcher,
                        partners={"demo-agency": {"certificate": "var/keys/partners/demo-agency.crt", **partner}},
                        **extra)


def _run(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GATEWAY, "--config", str(cfg), *args], capture_output=True, text=True, cwd=cfg.parent,
                          timeout=300)


def _drop(upload: Path, name: str, n: int, seed: int) -> None:
    """A demo-layout file of ``n`` rows whose references are unique to this file, written under a temporary
    name and renamed (as a client's upload tool does)."""
    tmp = upload / f".{name}.part"
    with open(tmp, "w", encoding="cp1252", newline="") as fh:
        fh.write(";".join(HEADER) + "\r\n")
        for r in rows(n, seed=seed):
            r[0] = f"{name.removesuffix('.csv')}-{r[0][3:]}"
            fh.write(";".join(f'"{v}"' if ";" in v else v for v in r) + "\r\n")
    os.rename(tmp, upload / name)


def _drop_xlsx(upload: Path, name: str, n: int, seed: int) -> None:
    """The same rows as an XLSX sheet of text cells (as an export that keeps the CSV's notation): read by the
    reader's child process, so that a kill or a freeze lands while the node waits for it."""
    from openpyxl import Workbook  # type: ignore[import-untyped]

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(list(HEADER))
    for r in rows(n, seed=seed):
        r[0] = f"{name.removesuffix('.xlsx')}-{r[0][3:]}"
        sheet.append(r)
    tmp = upload / f".{name}.part"
    book.save(tmp)
    os.rename(tmp, upload / name)


class Serve:
    """One serve process (a node), started again after every kill; its peak RSS sampled while it runs."""

    def __init__(self, base: Path, cfg: Path, node: str | None = None) -> None:
        self.base, self.cfg, self.node, self.runs = base, cfg, node, 0
        self.proc: subprocess.Popen[str] | None = None
        self.peak_kb = 0
        self.kills = self.terms = self.pauses = 0
        self.paused_s = 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def log(self, run: int) -> Path:
        return self.base / (f"serve-{self.node}-{run}.log" if self.node else f"serve-{run}.log")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.runs += 1
        env = {**os.environ, "GATEWAY_NODE_ID": self.node} if self.node else None
        with open(self.log(self.runs), "w") as out:
            self.proc = subprocess.Popen([*GATEWAY, "--config", str(self.cfg), "serve"], stdout=out,
                                         stderr=subprocess.STDOUT, text=True, cwd=self.base, env=env)

    def kill(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig != signal.SIGKILL:  # a frozen process takes a SIGTERM only once it runs again
            self.proc.send_signal(signal.SIGCONT)
        code = self.proc.wait(timeout=60)
        if sig == signal.SIGKILL:
            self.kills += 1
        else:
            self.terms += 1
        return code

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            proc = self.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))

    def close(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


def _claims(cfg: Path) -> list[dict[str, Any]]:
    out = _run(cfg, "claims", "list", "--json", "--limit", "10000000")
    return json.loads(out.stdout) if out.returncode == 0 else []


def _settled(cfg: Path, files: dict[str, int], soap_claims: int) -> bool:
    acks = cfg.parent / "inbox" / "demo" / "ack"
    if not all((acks / f"{name}.ack.csv").exists() for name in files):
        return False
    claims = _claims(cfg)
    return (len(claims) == sum(files.values()) + soap_claims
            and not any(c["state"] in END_STATES for c in claims))


class _AskingToWait(_Handler):
    """The simulated agency's handler whose 503 answers say, when ``retry_after`` is set, when to come back
    (``Retry-After``, as a partner in maintenance does): the gateway must then hold all the partner's rows that
    long, on every node (the hold is kept in the rows' ``available_at``), and deliver them afterwards."""

    retry_after: int | None = None

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        if code == 503 and self.retry_after is not None:
            self.send_header("Retry-After", str(self.retry_after))


def _hurt(rnd: random.Random, agency: Agency | None) -> None:
    """Now and then the partner fails a few requests, or is down for a few seconds; half of its 503 answers
    ask the gateway to wait 1-4 s (Retry-After)."""
    if agency is None or rnd.random() < 0.4:
        return
    _AskingToWait.retry_after = rnd.randint(1, 4) if rnd.random() < 0.5 else None
    if rnd.random() < 0.25:
        agency.faults.start_outage(rnd.choice((Fault.ERROR_503, Fault.REFUSE)))
        threading.Timer(rnd.uniform(1, 5), agency.faults.heal).start()
    else:
        fault = rnd.choice((Fault.ERROR_500, Fault.ERROR_503, Fault.DROP, Fault.TIMEOUT, Fault.LOSE_ANSWER))
        agency.faults.fail_next(fault, rnd.randint(1, 3))


class AckWatch(threading.Thread):
    """Notes every ack file's inode as it appears: an ack renamed into place twice (a node that wakes from a freeze
    and writes it again, or a resume after a kill between the ack and the submission's outcome) shows two."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.seen: dict[str, set[int]] = {}  # ack name -> the inodes it had
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.05):
            try:
                entries = list(os.scandir(self.folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.endswith(".ack.csv"):
                    try:
                        self.seen.setdefault(entry.name, set()).add(entry.inode())
                    except OSError:
                        continue

    def rewritten(self) -> int:
        return sum(len(inodes) - 1 for inodes in self.seen.values())


class Chaos(threading.Thread):
    """Kills (now and then stops) a node at random moments, whatever it is doing, and starts it again; with the
    HTTP partner, hurts the partner too. With several nodes, one kill in three leaves the node down for longer
    than its leases last (``down_for``), so that the others must take its work over instead of the node itself
    taking it back when it restarts."""

    def __init__(self, serves: list[Serve], rnd: random.Random, agency: Agency | None,
                 down_for: tuple[float, float] | None = None, cut_db: str | None = None,
                 pause_for: tuple[float, float] | None = None) -> None:
        super().__init__(daemon=True)
        self.serves, self.rnd, self.agency, self.down_for, self.cut_db = serves, rnd, agency, down_for, cut_db
        self.pause_for = pause_for
        self.exit_codes: list[int] = []
        self.db_cuts = 0  # times every database connection of the gateway was terminated
        self.halt = threading.Event()
        self.long_outages = 0
        self._lock = threading.Lock()
        self._down: dict[int, threading.Timer] = {}  # node index -> the timer that starts it again
        self._frozen: dict[int, threading.Timer] = {}  # node index -> the timer that lets it go on (SIGCONT)

    def run(self) -> None:
        while not self.halt.wait(self.rnd.uniform(3, 12)):
            _hurt(self.rnd, self.agency)
            with self._lock:
                up = [i for i, s in enumerate(self.serves) if i not in self._down and i not in self._frozen]
            if not up:
                continue
            i = self.rnd.choice(up)
            # the first fault is a freeze: a short run has one for sure
            if self.pause_for is not None and (not any(s.pauses for s in self.serves) or self.rnd.random() < 0.5):
                self._freeze(i)
                continue
            # the first stop is a SIGKILL: a short run (the suite's 25 s) kills serve at least once for sure
            term = self.rnd.random() < 0.2 and any(s.kills for s in self.serves)
            sig = signal.SIGTERM if term else signal.SIGKILL
            code = self.serves[i].kill(sig)
            # A SIGTERM that lands while the interpreter is still starting (before serve has its handlers: seconds
            # on a loaded machine) ends it by the signal's default action: a prompt stop, as asked, not a finding.
            self.exit_codes.append(0 if sig == signal.SIGTERM and code == -signal.SIGTERM else code)
            if self.down_for is not None and len(up) > 1 and self.rnd.random() < 1 / 3:
                self.long_outages += 1
                timer = threading.Timer(self.rnd.uniform(*self.down_for), self._back, (i,))
                with self._lock:
                    self._down[i] = timer
                timer.start()
                continue
            time.sleep(self.rnd.uniform(0, 1.0))
            self.serves[i].start()

    def _cutting(self, url: str) -> None:
        rnd = random.Random(self.rnd.random())
        while not self.halt.wait(rnd.uniform(0.5, 3.0)):
            self.db_cuts += _cut_connections(url)

    def start(self) -> None:
        super().start()
        if self.cut_db is not None:
            self._cutter = threading.Thread(target=self._cutting, args=(self.cut_db,), daemon=True)
            self._cutter.start()

    def _freeze(self, i: int) -> None:
        """SIGSTOP node ``i`` now and SIGCONT it after ``pause_for`` seconds: it is neither killed nor restarted."""
        assert self.pause_for is not None
        serve = self.serves[i]
        if not serve.running():
            return
        seconds = self.rnd.uniform(*self.pause_for)
        assert serve.proc is not None
        serve.proc.send_signal(signal.SIGSTOP)
        serve.pauses += 1
        serve.paused_s += seconds
        timer = threading.Timer(seconds, self._thaw, (i,))
        with self._lock:
            self._frozen[i] = timer
        timer.start()

    def _thaw(self, i: int) -> None:
        with self._lock:
            if self._frozen.pop(i, None) is None:
                return
            proc = self.serves[i].proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)

    def _back(self, i: int) -> None:
        with self._lock:
            if self._down.pop(i, None) is not None:
                self.serves[i].start()

    def stop(self) -> None:
        """No more faults; every node that is down is started again."""
        self.halt.set()
        self.join()
        if self.cut_db is not None:
            self._cutter.join()
        with self._lock:
            for i, timer in list(self._down.items()):
                timer.cancel()
                del self._down[i]
                self.serves[i].start()
        for i in list(self._frozen):
            self._thaw(i)


def _create_schema(url: str, seed: int) -> str:
    import psycopg

    schema = f"soak_{os.getpid()}_{seed}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _cut_connections(url: str) -> int:
    """Terminate the gateway's connections (those named by ``url``'s application_name), as a server restart or
    a failover does to its pooled connections, whatever they are doing. Other clients of the same database (a
    test suite running beside it) are left alone."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND application_name = current_setting('application_name') "
                            "AND pid <> pg_backend_pid()").fetchall()
    return 1 if rows else 0


async def _put_slowly(port: int, key: Path, local: Path, name: str) -> None:
    """asyncssh, 32 KiB at a time with a pause between: a large file takes about a second, so a kill may land
    in the middle of it (OpenSSH's put of these files is over in milliseconds)."""
    async with asyncssh.connect("127.0.0.1", port=port, username="demo", client_keys=[str(key)], known_hosts=None,
                                connect_timeout=5) as conn, conn.start_sftp_client() as sftp:
        async with sftp.open(f"/upload/{name}", "wb") as fh:
            data = local.read_bytes()
            for i in range(0, len(data), 32768):
                await fh.write(data[i:i + 32768], i)
                await asyncio.sleep(0.08)
        # asyncssh's close sends nothing, and raises nothing, once the connection is gone: a kill between the
        # last write and the close looked like a finished put (the gateway acked it 'incomplete', as it must).
        # One more request on the session tells a put that was closed from one that was not.
        await sftp.stat(f"/upload/{name}")


def _taken(ack: Path) -> bool:
    """The gateway has the file: its ack is there and does not ask for the upload again."""
    try:
        return "upload_incomplete" not in ack.read_text(encoding="utf-8")
    except OSError:
        return False


def _upload(port: int, key: Path, known_hosts: Path, local: Path, name: str, deadline: float, slow: bool,
            ack: Path) -> int:
    """Put a file until a put gets through (the server is killed now and then, so a put may break off half way
    or find nobody listening), with OpenSSH ``sftp`` or slowly with asyncssh; returns how many tries it took.
    Before trying again it looks at the file's ack, as a client's upload job does: a put whose answer was lost
    with a kill may have been taken whole (then it is not sent again), or acked 'incomplete' (then it is)."""
    tries = 0
    while time.monotonic() < deadline:
        if tries and _taken(ack):
            return tries
        tries += 1
        if slow:
            try:
                asyncio.run(asyncio.wait_for(_put_slowly(port, key, local, name), 60))
                return tries
            except (OSError, asyncssh.Error, asyncio.TimeoutError):
                time.sleep(0.5)
                continue
        out = subprocess.run(
            ["sftp", "-b", "-", "-i", str(key), "-P", str(port), "-o", "StrictHostKeyChecking=accept-new",
             "-o", f"UserKnownHostsFile={known_hosts}", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "demo@127.0.0.1"],
            input=f"put {local} /upload/{name}\n", capture_output=True, text=True, timeout=120)
        if out.returncode == 0:
            return tries
        time.sleep(0.5)
    raise SystemExit(f"{name}: no upload got through before the deadline")


SOAP_PASSWORD = "soak password 1234"


def _soap_claim(ref: str, rnd: random.Random) -> dict[str, Any]:
    return {"creditor_reference": ref, "principal_amount": f"{rnd.randrange(1000, 500_000) / 100:.2f}",
            "invoice_number": f"INV-{ref}", "invoice_date": "2025-03-01", "due_date": "2025-03-15",
            "debtor": {"first_name": "Jürgen", "last_name": "Müller", "birth_date": "1980-05-17",
                       "addresses": {"Address": [{"street": "Hauptstraße 12", "postal_code": "50667", "city": "Köln"}]}}}


def _submit(url: str, cert: Path, claims: list[dict[str, Any]], deadline: float) -> tuple[dict[str, int], int]:
    """SubmitClaims with zeep until a call is answered (the server is killed now and then: a call may find
    nobody listening, or lose its answer after the claims were stored; the same claims are sent again, as an ERP
    does). Returns each reference's claim id from the answer, and how many calls it took."""
    import requests
    import zeep
    from zeep.transports import Transport

    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        try:
            session = requests.Session()
            session.trust_env, session.verify, session.auth = False, str(cert), ("soak-erp", SOAP_PASSWORD)
            client = zeep.Client(f"{url}?wsdl", transport=Transport(session=session, timeout=30))  # type: ignore[no-untyped-call]
            answer = client.service.SubmitClaims(claims={"ClaimInput": claims})
        except (requests.RequestException, zeep.exceptions.TransportError, OSError):
            time.sleep(0.5)
            continue
        except zeep.exceptions.Fault as exc:
            if not str(exc.code or "").endswith("Server.Busy"):  # busy (the database away): retry later, it says
                raise
            time.sleep(0.5)
            continue
        return {r.creditor_reference: r.claim_id for r in answer.results.ClaimResult}, tries
    raise SystemExit("no SubmitClaims call got through before the deadline")


EXPECT_SENDERS = 6  # one address: more than its 4 body-wait slots (soap.max_body_waits_per_address)
EXPECT_CLAIMS = 600  # a body of about 350 KB: over the 256 KB a request may wait for in the selector


class ExpectSenders:
    """Beside the ERP's calls, ``EXPECT_SENDERS`` clients on the same address send large SubmitClaims calls as .NET
    does: the header with ``Expect: 100-continue`` alone, the body (16 KB every 50 ms, about a second) only after
    ``100 Continue``. They start each call together (a barrier), so that more bodies are under way than the
    address has body-wait slots: the others wait for a slot in the SOAP front's waiting room, or are answered
    ``Server.Busy`` at the header deadline. Each call is sent again until it is answered (a kill, a cut, a busy
    answer), and its answer must name the claims stored under its references."""

    def __init__(self, port: int, cert: Path, seed: int) -> None:
        self.port, self.cert, self.seed = port, cert, seed
        self.answered: dict[str, int] = {}
        self.calls = self.tries = self.busy = self.waited = 0  # waited: 100 Continue came after more than 0.5 s
        self.unanswered: list[str] = []  # calls that got no answer within 300 s (their first reference)
        self.longest_wait = 0.0
        self.body_bytes = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._together = threading.Barrier(EXPECT_SENDERS)
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(EXPECT_SENDERS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        """No new calls; the calls under way are sent until answered."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=600)

    def _envelope(self, claims: list[dict[str, Any]]) -> bytes:
        import requests
        import zeep
        from lxml import etree
        from zeep.transports import Transport

        while True:  # the WSDL from the running server (it may be down for a moment)
            try:
                session = requests.Session()
                session.trust_env, session.verify = False, str(self.cert)
                transport = Transport(session=session, timeout=30)  # type: ignore[no-untyped-call]
                client = zeep.Client(f"https://127.0.0.1:{self.port}/soap?wsdl",  # type: ignore[no-untyped-call]
                                     transport=transport)
                message = client.create_message(  # type: ignore[no-untyped-call]
                    client.service, "SubmitClaims", claims={"ClaimInput": claims})
                return bytes(etree.tostring(message, xml_declaration=True, encoding="utf-8"))
            except (requests.RequestException, zeep.exceptions.TransportError, OSError):
                time.sleep(0.5)

    def _run(self, i: int) -> None:
        rnd = random.Random(self.seed * 100 + i)
        n = 0
        while not self.stop.wait(rnd.uniform(0.5, 3.0)):
            claims = [_soap_claim(f"E{i}-{n:04d}-{k:03d}", rnd) for k in range(EXPECT_CLAIMS)]
            body = self._envelope(claims)
            try:  # all at once (a sender still resending its last call is not waited for long)
                self._together.wait(timeout=5)
            except threading.BrokenBarrierError:
                if self._together.broken:
                    self._together.reset()
            answered = self._send(body, time.monotonic() + 300)
            if answered is None:
                self.unanswered.append(str(claims[0]["creditor_reference"]))
                return
            with self._lock:
                self.answered.update(answered)
                self.calls += 1
                self.body_bytes = max(self.body_bytes, len(body))
            n += 1

    def _send(self, body: bytes, deadline: float) -> dict[str, int] | None:
        import base64
        import ssl

        from lxml import etree

        auth = base64.b64encode(f"soak-erp:{SOAP_PASSWORD}".encode()).decode()
        head = (f"POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n"
                f"SOAPAction: \"SubmitClaims\"\r\nAuthorization: Basic {auth}\r\nContent-Length: {len(body)}\r\n"
                "Expect: 100-continue\r\nConnection: close\r\n\r\n").encode()
        ctx = ssl.create_default_context(cafile=str(self.cert))
        while time.monotonic() < deadline:
            with self._lock:
                self.tries += 1
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw, \
                        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    sock.sendall(head)
                    asked = time.monotonic()
                    buf = bytearray()
                    status, headers = _read_head(sock, buf)
                    if status == 100:
                        wait = time.monotonic() - asked
                        with self._lock:
                            self.waited += wait > 0.5
                            self.longest_wait = max(self.longest_wait, wait)
                        for at in range(0, len(body), 16384):
                            sock.sendall(body[at:at + 16384])
                            time.sleep(0.05)
                        status, headers = _read_head(sock, buf)
                    payload = _read_body(sock, buf, headers)
            except (OSError, ConnectionError, ValueError):
                time.sleep(0.5)
                continue
            if status == 503:  # Server.Busy: no slot within the header deadline, or the database away
                with self._lock:
                    self.busy += 1
                time.sleep(0.5)
                continue
            if status != 200:
                raise SystemExit(f"an Expect call was answered {status}: {payload[:500]!r}")
            results: dict[str, int] = {}
            for el in etree.fromstring(payload).iter():
                if etree.QName(el).localname == "ClaimResult":
                    fields = {etree.QName(c).localname: c.text for c in el}
                    results[str(fields["creditor_reference"])] = int(str(fields["claim_id"]))
            return results
        return None


def _read_head(sock: Any, buf: bytearray) -> tuple[int, dict[str, str]]:
    """The next status line and header block (an interim 100 or a final answer's)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an answer")
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[:end + 4]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers


def _read_body(sock: Any, buf: bytearray, headers: dict[str, str]) -> bytes:
    """The answer's body: by its length, chunked, or to the connection's end (Connection: close was asked)."""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
    data = bytes(buf)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if len(data) < length:
            raise ConnectionError("answer cut short")
        return data[:length]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out, at = bytearray(), 0
        while True:
            eol = data.index(b"\r\n", at)
            size = int(data[at:eol].split(b";")[0], 16)
            if size == 0:
                return bytes(out)
            out += data[eol + 2:eol + 2 + size]
            at = eol + 2 + size + 2
    return data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def soak(seconds: float, db_url: str | None, seed: int, keep: bool, partner_kind: str = "directory",
         intake: str = "inbox", nodes: int = 1, cut_db: bool = False, pause: bool = False,
         xlsx: bool = False) -> dict[str, Any]:
    if nodes > 1 and (db_url is None or intake != "inbox"):
        raise SystemExit("several nodes need PostgreSQL (--db) and the shared inbox (each SFTP or SOAP front "
                         "would want the same port)")
    if cut_db and (db_url is None or not db_url.startswith("postgresql")):
        raise SystemExit("--cut-db terminates PostgreSQL connections: it needs --db postgresql://...")
    schema = None
    if db_url is not None and db_url.startswith("postgresql") and "search_path" not in db_url:
        # a schema of the run's own, dropped afterwards: the database may be shared (a test suite beside it), and
        # claims of an earlier run in the same tables would fail this one's counts (a URL that names a schema,
        # as the tests' do, is used as it is)
        schema = _create_schema(db_url, seed)
        db_url += ("&" if "?" in db_url else "?") + f"options=-csearch_path%3D{schema}"
    if cut_db and db_url is not None:  # the gateway's connections by name: only those are cut
        db_url += ("&" if "?" in db_url else "?") + f"application_name=gateway-soak-{os.getpid()}-{seed}"
    rnd = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    agency: Agency | None = None
    sim: HttpAgencySimulator | None = None
    if partner_kind == "http":
        agency = Agency("demo-agency")
        agency.faults.hang_seconds = 3.0  # longer than the adapter waits: a timeout
        sim = HttpAgencySimulator(agency).start()
        _AskingToWait.retry_after = None
        assert sim._server is not None
        sim._server.RequestHandlerClass = _AskingToWait  # read for each request the server takes
        partner: dict[str, Any] = {"adapter": "http", "options": {"url": sim.url, "timeout": 2.0}}
    else:
        partner = {"adapter": "directory", "options": {"path": "var/partners/demo-agency"}}
    extra: dict[str, Any] = {}
    if intake == "sftp":
        key = asyncssh.generate_private_key("ssh-ed25519")
        key_path = base / "client-key"
        key.write_private_key(str(key_path))
        key_path.chmod(0o600)
        port = _free_port()
        extra = {"sftp": {"enabled": True, "port": port},
                 "clients": {"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
                                      "sftp": {"authorized_keys": [key.export_public_key().decode().strip()]}}}}
    if intake == "soap":
        from gateway.crypto.passwords import hash_password
        port = _free_port()
        extra = {"soap": {"enabled": True, "host": "127.0.0.1", "port": port},
                 "clients": {"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
                                      "soap": {"username": "soak-erp", "password_hash": hash_password(SOAP_PASSWORD)}}}}
    if nodes > 1 or pause:  # leases short enough that a node down (or frozen) for longer is taken over in the run
        extra["node"] = {"lease_seconds": LEASE_SECONDS}
        extra["dispatcher"] = {"lease_seconds": LEASE_SECONDS}
    cfg = _config(base, db_url or f"sqlite:///{base / 'var' / 'gateway.db'}", partner, **extra)
    if xlsx:  # the demo mapping takes the export as CSV or as XLSX, whichever the file's bytes show
        mapping = base / "mappings" / "demo.yaml"
        text = mapping.read_text(encoding="utf-8")
        assert "\n  type: csv\n" in text
        mapping.write_text(text.replace("\n  type: csv\n", "\n  type: [csv, xlsx]\n"), encoding="utf-8")
    for args in (("keys", "init"), ("db", "upgrade")):
        out = _run(cfg, *args)
        if out.returncode:
            raise SystemExit(out.stderr)
    upload = base / "inbox" / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    outgoing = base / "outgoing"
    outgoing.mkdir()
    files: dict[str, int] = {}
    soap: dict[str, int] = {}  # reference -> the claim id SubmitClaims answered
    tries = calls = 0
    serves = [Serve(base, cfg, f"n{i + 1}" if nodes > 1 else None) for i in range(nodes)]
    for serve in serves:
        serve.start()
    chaos = Chaos(serves, rnd, agency, (LEASE_SECONDS * 1.2, LEASE_SECONDS * 2.5) if nodes > 1 else None,
                  db_url if cut_db else None, (LEASE_SECONDS * 1.2, LEASE_SECONDS * 2.5) if pause else None)
    acks = AckWatch(base / "inbox" / "demo" / "ack")
    acks.start()
    started = time.monotonic()
    chaos.start()
    expect = ExpectSenders(port, base / "var" / "keys" / "tls.crt", seed) if intake == "soap" else None
    if expect is not None:
        expect.start()
    try:
        while time.monotonic() - started < seconds:
            if intake == "soap":
                batch = [_soap_claim(f"S{calls:05d}-{i:03d}", rnd) for i in range(rnd.choice((1, 10, 50)))]
                answered, n_tries = _submit(f"https://127.0.0.1:{port}/soap", base / "var" / "keys" / "tls.crt",
                                            batch, time.monotonic() + 300)
                soap.update(answered)
                calls, tries = calls + 1, tries + n_tries
                continue
            name = f"f{len(files):04d}.csv"
            n = rnd.choice((20, 100, 500, 2000))
            if xlsx and rnd.random() < 0.25:
                name = name.replace(".csv", ".xlsx")
                _drop_xlsx(outgoing if intake == "sftp" else upload, name, n, seed=rnd.randrange(1 << 30))
            elif intake == "sftp":
                _drop(outgoing, name, n, seed=rnd.randrange(1 << 30))
            else:
                _drop(upload, name, n, seed=rnd.randrange(1 << 30))
            if intake == "sftp":
                tries += _upload(port, key_path, base / "known_hosts", outgoing / name, name,
                                 time.monotonic() + 300, slow=rnd.random() < 0.5,
                                 ack=base / "inbox" / "demo" / "ack" / f"{name}.ack.csv")
            files[name] = n
            time.sleep(rnd.uniform(0.3, 1.5))
        chaos.stop()
        if expect is not None:
            expect.join()
            soap.update(expect.answered)
        exit_codes = chaos.exit_codes
        if agency is not None:
            agency.faults.heal()
        deadline = time.monotonic() + max(300.0, seconds)
        while not _settled(cfg, files, len(soap)):
            if time.monotonic() > deadline:
                break
            for serve in serves:
                if serve.proc is not None and serve.proc.poll() is not None:  # it exited on its own: a finding
                    exit_codes.append(serve.proc.returncode)
                    serve.start()
            time.sleep(2.0)
        settle_s = time.monotonic() - started - seconds
    finally:
        for serve in serves:
            serve.close()
        if sim is not None:
            sim.stop()
        acks.halt.set()
    report = _check(base, cfg, files, soap, serves, exit_codes, settle_s, keep, agency)
    if schema is not None and db_url is not None:
        if keep or report["problems"]:  # kept with the run's directory, to be looked at
            report["schema"] = schema
        else:
            _drop_schema(db_url, schema)
    report.update(intake=intake, tries=tries if intake != "inbox" else None, soap_calls=calls or None,
                  nodes=nodes, long_outages=chaos.long_outages if nodes > 1 else None,
                  db_cuts=chaos.db_cuts if cut_db else None,
                  pauses=sum(s.pauses for s in serves) if pause else None, acks_rewritten=acks.rewritten(),
                  paused_s=round(sum(s.paused_s for s in serves), 1) if pause else None)
    if expect is not None:
        if expect.unanswered:
            report["problems"].append(f"{len(expect.unanswered)} Expect calls never answered, e.g. the one of "
                                      f"{expect.unanswered[0]}")
        report.update(expect_calls=expect.calls, expect_tries=expect.tries, expect_busy=expect.busy,
                      expect_waited=expect.waited, expect_longest_wait_s=round(expect.longest_wait, 1),
                      expect_body_kb=expect.body_bytes // 1024)
    return report


def _check(base: Path, cfg: Path, files: dict[str, int], soap: dict[str, int], serves: list[Serve], exit_codes: list[int],
           settle_s: float, keep: bool, agency: Agency | None) -> dict[str, Any]:
    problems: list[str] = []
    acks = base / "inbox" / "demo" / "ack"
    for name, n in files.items():
        ack = acks / f"{name}.ack.csv"
        if not ack.exists():
            problems.append(f"{name}: no ack")
        elif len(ack.read_text(encoding="utf-8").splitlines()) != n + 1:
            problems.append(f"{name}: ack has {len(ack.read_text(encoding='utf-8').splitlines()) - 1} rows, not {n}")
    subs = json.loads(_run(cfg, "submissions", "list", "--json", "--limit", "100000").stdout or "[]")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in subs:
        by_name.setdefault(s["filename"], []).append(s)
    for name, n in files.items():
        got = by_name.get(name, [])
        if len(got) != 1 or got[0]["status"] != "completed" or got[0]["rows"] != n:
            problems.append(f"{name}: submissions {[(s['status'], s['rows']) for s in got]}")
    claims = _claims(cfg)
    refs = [c["creditor_reference"] for c in claims]
    expected = sum(files.values()) + len(soap)
    if len(refs) != expected or len(set(refs)) != len(refs):
        problems.append(f"{len(refs)} claims ({len(set(refs))} references) for {expected} rows and SOAP claims")
    stored = {c["creditor_reference"]: c["id"] for c in claims}
    wrong = {ref: cid for ref, cid in soap.items() if stored.get(ref) != cid}
    if wrong:  # an answer named a claim id that is not the reference's claim (or none)
        problems.append(f"{len(wrong)} SubmitClaims answers name another claim, e.g. {next(iter(wrong.items()))}")
    states: dict[str, int] = {}
    for c in claims:
        states[c["state"]] = states.get(c["state"], 0) + 1
    if any(s in END_STATES for s in states):
        problems.append(f"claims left behind: {states}")
    handed = {c["id"] for c in claims if c["state"] not in END_STATES}
    partner_dir = base / "var" / "partners" / "demo-agency"
    if agency is None:
        keys = base / "var" / "keys" / "partners"
        cert, key = load_partner_keys(keys / "demo-agency.crt", keys / "demo-agency.key")
        seen: dict[int, list[str]] = {}
        for batch in sorted(partner_dir.glob("*.p7m")):
            for cid in claim_ids_of(batch.read_bytes(), cert, key):
                seen.setdefault(cid, []).append(batch.name)
        twice = {cid: len(names) for cid, names in seen.items() if len(names) > 1}
        has = set(seen)
    else:
        twice = agency.duplicates()
        has = set(agency.cases)
    if twice:
        problems.append(f"{len(twice)} claims reached the partner more than once, e.g. {next(iter(twice.items()))}")
    if has != handed:
        problems.append(f"the partner has {len(has)} claims, the gateway handed over {len(handed)}")
    dead = _run(cfg, "outbox", "list", "--json", "--status", "dead")
    dead_rows = json.loads(dead.stdout) if dead.returncode == 0 and dead.stdout.strip() else []
    if dead_rows:
        problems.append(f"{len(dead_rows)} dead outbox rows")
    logs = "".join(serve.log(r).read_text(errors="replace") for serve in serves for r in range(1, serve.runs + 1))
    gave_up = logs.count("supervisor.gave_up")
    tracebacks = logs.count("Traceback (most recent call last)")
    if tracebacks:  # serve logs an exception's traceback only for a crash or an internal error: each is a finding
        lines = logs.splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)"))
        last = next((line for line in lines[first + 1:] if line and not line.startswith(" ")), "?")
        problems.append(f"{tracebacks} tracebacks in serve's log, the first ending {last[:200]!r}")
    errors: dict[str, int] = {}  # ERROR and CRITICAL lines by event (format text: time level logger event ...)
    for line in logs.splitlines():
        parts = line.split(" ", 5)
        if len(parts) > 4 and parts[2] in ("ERROR", "CRITICAL"):
            errors[parts[4]] = errors.get(parts[4], 0) + 1
    if gave_up:
        problems.append(f"a supervised task gave up {gave_up} times")
    unexpected_exits = [c for c in exit_codes if c not in (0, -signal.SIGKILL)]
    if unexpected_exits:
        problems.append(f"serve exit codes {unexpected_exits}")
    peak_mb = max(serve.peak_kb for serve in serves) / 1024
    if peak_mb > 512:
        problems.append(f"peak RSS {peak_mb:.0f} MB above limits.memory_mb")
    report = {"partner": "http" if agency else "directory", "partner_claims": len(has), "files": len(files),
              "rows": sum(files.values()), "soap_claims": len(soap), "claims": len(claims), "states": states,
              "kills": sum(s.kills for s in serves), "sigterms": sum(s.terms for s in serves),
              "starts": sum(s.runs for s in serves),
              "settled_after_s": round(settle_s, 1), "peak_rss_mb": round(peak_mb, 1),
              "task_failures_logged": logs.count("supervisor.task_failed"),
              "resumed": logs.count("serve.resumed"), "problems": problems, "dir": str(base),
              "partner_holds_logged": logs.count("dispatch.partner_hold"),
              "error_lines": errors,
              # taken over while frozen or down: outbox rows (dispatch.lease_lost), client ingests (LeaseLost)
              "lease_lost_logged": logs.count("dispatch.lease_lost") + logs.count("LeaseLost")
              + logs.count("ingest.resume_taken_over"),
              # claims sent again (after a lost answer, a kill, a freeze) and folded by the partner's keys
              "partner_resends": sum(n - 1 for n in agency.create_requests.values()) if agency else None}
    if not keep and not problems:
        shutil.rmtree(base, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long files arrive and faults happen")
    parser.add_argument("--db", help="database URL (default: SQLite in the run's directory)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory even when all is well")
    parser.add_argument("--partner", choices=("directory", "http"), default="directory")
    parser.add_argument("--intake", choices=("inbox", "sftp", "soap"), default="inbox",
                        help="files dropped into the watched inbox or put over SFTP, or SubmitClaims calls (zeep)")
    parser.add_argument("--nodes", type=int, default=1,
                        help="serve processes sharing the database and the inbox (PostgreSQL and --intake inbox)")
    parser.add_argument("--cut-db", action="store_true",
                        help="also terminate all the gateway's PostgreSQL connections every 0.5-3 s")
    parser.add_argument("--xlsx", action="store_true",
                        help="one file in four an XLSX sheet (read in the reader's child process)")
    parser.add_argument("--pause", action="store_true",
                        help="half of the faults freeze a node (SIGSTOP) for longer than its leases, then SIGCONT it")
    args = parser.parse_args()
    report = soak(args.seconds, args.db, args.seed, args.keep, args.partner, args.intake, args.nodes, args.cut_db,
                  args.pause, args.xlsx)
    print(json.dumps(report, sort_keys=True))
    sys.exit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
