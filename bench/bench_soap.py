"""SOAP SubmitClaims throughput and latency, next to a bare spyne echo service served the same way.

    .venv/bin/python bench/bench_soap.py [--clients 8] [--requests 60] [--claims 10] [--rounds 1] [--db URL]

Both services run in this process on cheroot over HTTPS (127.0.0.1, ephemeral port, same thread
count); each of ``--clients`` threads keeps one HTTPS connection and posts the same kind of envelope
(``--claims`` claims, unique references). The gateway stores every claim (SQLite in a temp dir
unless ``--db``); the echo service parses the same request with the same schema validation and
answers a SubmitResult of the same shape without touching a database.

Runs are interleaved (echo, gateway, gateway, echo; ``--rounds`` times) so that a change in the machine's
load falls on both. Next to wall-clock figures, each run reports the server's CPU time per request: the
CPU time of this process (both servers; the clients are other processes) during the run, divided by the
requests answered. That is steadier than wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=ImportWarning)  # spyne's vendored six on import
warnings.filterwarnings("ignore", category=DeprecationWarning)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from cheroot.ssl.builtin import BuiltinSSLAdapter  # noqa: E402
from cheroot.wsgi import Server  # noqa: E402
from spyne import Application, Array, Boolean, ServiceBase, rpc  # noqa: E402
from spyne.protocol.soap import Soap11  # noqa: E402
from spyne.server.wsgi import WsgiApplication  # noqa: E402

from gateway.bootstrap import build_app  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.entrypoints.soap import types as t  # noqa: E402
from gateway.crypto.passwords import hash_password  # noqa: E402
from gateway.entrypoints.soap.server import SoapServer  # noqa: E402
from gateway.services.keys import init_keys  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from bench.pgschema import in_schema  # noqa: E402

PASSWORD = "bench password 123"

CLAIM = """<gw:ClaimInput>
 <gw:creditor_reference>{ref}</gw:creditor_reference><gw:principal_amount>120.50</gw:principal_amount>
 <gw:debtor><gw:first_name>Jürgen</gw:first_name><gw:last_name>Müller</gw:last_name>
  <gw:birth_date>1980-05-17</gw:birth_date>
  <gw:addresses><gw:Address><gw:street>Hauptstraße 12</gw:street><gw:postal_code>50667</gw:postal_code>
   <gw:city>Köln</gw:city></gw:Address></gw:addresses>
  <gw:emails><gw:Email>j.mueller@example.org</gw:Email></gw:emails>
  <gw:bank_accounts><gw:BankAccount><gw:iban>DE89370400440532013000</gw:iban></gw:BankAccount></gw:bank_accounts>
 </gw:debtor>
 <gw:invoice_number>INV-{ref}</gw:invoice_number>
 <gw:fees><gw:Fee><gw:kind>dunning</gw:kind><gw:amount>5.00</gw:amount></gw:Fee></gw:fees>
 <gw:invoice_date>2025-03-01</gw:invoice_date><gw:due_date>2025-03-15</gw:due_date>
</gw:ClaimInput>"""
ENVELOPE = """<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:gw="urn:inkasso-gateway:soap:v1">
<soap:Body><gw:SubmitClaims><gw:claims>{claims}</gw:claims></gw:SubmitClaims></soap:Body></soap:Envelope>"""


class EchoService(ServiceBase):  # type: ignore[misc]
    """The same operation and types, answering without any work behind it."""

    @rpc(Array(t.ClaimInput, min_occurs=1, nillable=False), Boolean(min_occurs=0), _returns=t.SubmitResult)
    def SubmitClaims(ctx, claims, release):  # type: ignore[no-untyped-def]
        return t.SubmitResult(submission="S-ECHO", status="completed", accepted=len(claims), held=0, rejected=0,
                              results=[t.ClaimResult(index=i, creditor_reference=c.creditor_reference,
                                                     outcome="accepted", claim_id=i, existing=False, state="queued")
                                       for i, c in enumerate(claims, start=1)])


def echo_server(cert: Path, key: Path, threads: int) -> Server:
    app = Application([EchoService], tns=t.TNS, name="Echo",
                      in_protocol=Soap11(validator="lxml", load_dtd=False, resolve_entities=False),
                      out_protocol=Soap11())
    server = Server(("127.0.0.1", 0), WsgiApplication(app), numthreads=threads, request_queue_size=64)
    server.ssl_adapter = BuiltinSSLAdapter(str(cert), str(key))
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    return server


def _client(args: tuple[str, str, int, int, str, int, tuple[str, str] | None, Any]) -> list[float]:
    """One ERP: its own process and HTTPS connection, ``per_client`` requests one after another."""
    url, cert, per_client, claims, tag, n, auth, go = args
    s = requests.Session()
    s.trust_env, s.verify, s.auth = False, cert, auth
    bodies = [ENVELOPE.format(claims="".join(CLAIM.format(ref=f"{tag}-{n}-{i}-{k}") for k in range(claims))).encode()
              for i in range(per_client + 3)]
    for body in bodies[:3]:  # connection and TLS set up, caches warm
        s.post(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=60)
    go.wait()  # all clients start the measured part together
    out = []
    for body in bodies[3:]:
        start = time.perf_counter()
        r = s.post(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=60)
        out.append(time.perf_counter() - start)
        if r.status_code != 200 or b"<tns:accepted>" + str(claims).encode() not in r.content:
            raise RuntimeError(f"{tag}: request failed: {r.text[:600]}")
    return out


def run(url: str, cert: Path, clients: int, per_client: int, claims: int, tag: str,
        auth: tuple[str, str] | None) -> dict[str, float]:
    """Post from ``clients`` processes; returns requests/s, latency percentiles and server CPU per request in ms."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        go = manager.Barrier(clients + 1)
        with ctx.Pool(clients) as pool:
            pending = pool.map_async(_client, [(url, str(cert), per_client, claims, tag, n, auth, go)
                                               for n in range(clients)])
            go.wait()
            started, cpu = time.perf_counter(), time.process_time()
            latencies = [x for part in pending.get(timeout=600) for x in part]
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000, "n": len(latencies),
            "cpu": cpu / len(latencies) * 1000}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=60, help="per client")
    p.add_argument("--claims", type=int, default=10, help="per request")
    p.add_argument("--threads", type=int, default=16, help="server worker threads")
    p.add_argument("--inflight", type=int, default=None, help="gateway soap.max_inflight (default: config)")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (echo, gateway, gateway, echo)")
    p.add_argument("--db", help="database URL (default: SQLite in a temp dir)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"load average before: {_load()}")
    in_schema(args.db, "bench_soap", lambda db: _measure(args, db))


def _measure(args: argparse.Namespace, db_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = write_config(base, db_url or f"sqlite:///{base / 'var' / 'gateway.db'}",
                           clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
                                             "soap": {"username": "bench", "password_hash": hash_password(PASSWORD)}}},
                           soap={"threads": args.threads,
                                 **({"max_inflight": args.inflight} if args.inflight else {})})
        init_keys(load_config(cfg))
        app = build_app(cfg, migrate=True)
        gw = SoapServer(app, host="127.0.0.1", port=0)
        gw.start()
        cert, key = app.config.keys_dir / "tls.crt", app.config.keys_dir / "tls.key"
        echo = echo_server(cert, key, args.threads)
        runs: list[tuple[str, dict[str, float]]] = []
        try:
            for rnd in range(args.rounds):
                for n, name in enumerate(("echo", "gateway", "gateway", "echo")):
                    if name == "echo":
                        runs.append((name, run(f"https://127.0.0.1:{echo.bind_addr[1]}/soap", cert, args.clients,
                                               args.requests, args.claims, f"echo{rnd}x{n}", None)))
                    else:
                        runs.append((name, run(gw.url, cert, args.clients, args.requests, args.claims,
                                               f"gw{rnd}x{n}", ("bench", PASSWORD))))
        finally:
            gw.stop()
            echo.stop()
            app.close()
    db = "PostgreSQL" if args.db else "SQLite (WAL)"
    print(f"SubmitClaims, {args.claims} claims/request, {args.clients} concurrent clients, "
          f"{args.requests} requests each, cheroot {args.threads} threads, HTTPS, {db}")
    print(f"{'service':<22}{'requests/s':>12}{'claims/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'server CPU ms/req':>19}")
    for name, r in runs:
        print(f"{name:<22}{r['rps']:>12.1f}{r['rps'] * args.claims:>10.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}"
              f"{r['cpu']:>19.2f}")
    mean = {k: {f: statistics.fmean(r[f] for n, r in runs if n == k) for f in ("rps", "cpu", "p99")}
            for k in ("echo", "gateway")}
    print(f"gateway / echo: server CPU per request {mean['gateway']['cpu'] / mean['echo']['cpu']:.2f}x, "
          f"wall time per request {mean['echo']['rps'] / mean['gateway']['rps']:.2f}x; mean p99 echo "
          f"{mean['echo']['p99']:.0f} ms, gateway {mean['gateway']['p99']:.0f} ms; load average after: {_load()}")


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
