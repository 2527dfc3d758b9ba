"""Page speed of the web console with 100k claims of one client: the claims list, one claim, the runs list,
one run (all 100k claims in one run), a run searched.

Stores N claims of one client the way ``bench_list.py`` does (``claims.insert_prepared`` in chunks, with
their projection rows, states spread like a book of collection cases), plus one claim handed over through
the SOAP use case (``submit.submit_claims``, real encrypted debtor data) for the claim page. Then requests
each page through Starlette's TestClient against the console app (routing, session cookie, use cases,
templates: everything but TLS and the socket), logged in as a client user, and reports p50/p99 per page,
each as a ratio to the login page (no database) measured in the same run.

    python bench/bench_web.py [--claims 100000] [--reps 200] [--db postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.testclient import TestClient  # noqa: E402

from bench.bench_list import _pct, _times, filled_app  # noqa: E402
from gateway.bootstrap import App  # noqa: E402
from gateway.domain.model import Address, Claim, Debtor  # noqa: E402
from gateway.entrypoints.web.app import build_web_app  # noqa: E402
from gateway.services import submit  # noqa: E402
from gateway.services.console import MAX_EXPORT  # noqa: E402
from tests.integration.web.conftest import PASSWORDS, Console, web_config  # noqa: E402
from bench.pgschema import in_schema  # noqa: E402


# Two clients, so the console's isolation conditions are part of every query measured.
CLIENTS = {c: {"name": c, "mapping": "demo", "default_partner": "demo-agency"} for c in ("demo", "other")}


def time_pages(pages: dict[str, tuple[TestClient, str]], reps: int) -> float:
    """GET each page ``reps`` times, print its p50/p99 and its ratio to the first page's p50 (returned)."""
    ref = 0.0
    for name, (client, path) in pages.items():
        def get(client: TestClient = client, path: str = path) -> None:
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code)
        ms = _times(get, reps)
        p50, p99 = _pct(ms, 50), _pct(ms, 99)
        ref = ref or p50
        print(f"  {name}: p50 {p50:.1f} ms p99 {p99:.1f} ms ({p50 / ref:.1f}x the reference)")
    return ref


def _one_real_claim(app: App) -> int:
    debtor = Debtor(first_name="Erika", last_name="Muster", addresses=[Address(
        street="Hauptstraße", house_number="1", postal_code="10115", city="Berlin")])
    claim = Claim(client_id="demo", creditor_reference="WEB-BENCH-1", principal_amount=Decimal("99.50"),
                  debtor=debtor, invoice_date=date.today() - timedelta(days=30),
                  due_date=date.today() - timedelta(days=10))
    answer = submit.submit_claims(app, "demo", [submit.Draft(reference="WEB-BENCH-1", claim=claim)]).results[0]
    assert answer.claim_id is not None, answer.findings
    return answer.claim_id


def _measure(args: argparse.Namespace, db_url: str | None) -> None:
    with filled_app(db_url, args.claims, clients=CLIENTS, web=web_config()) as (app, took):
        claim_id = _one_real_claim(app)
        console = Console(app, build_web_app(app))
        c: TestClient = console.client("anna")
        anon = console.client()
        db = "PostgreSQL" if db_url else "SQLite (WAL)"
        print(f"{db}: {args.claims} claims stored in {took:.0f} s; cores={os.cpu_count()} "
              f"loadavg={Path('/proc/loadavg').read_text().split()[:3]}; {args.reps} requests per page")
        # The filled claims were received on 2025-01-01: a range from 2024-12-01 matches every one of
        # them, as the default (last three months) does for a client whose whole book is recent.
        pages = {"login page (reference, no database)": (anon, "/login"),
                 f"claims list, all {args.claims} in range, newest change first": (c, "/claims?from=2024-12-01"),
                 "claims list, state in_progress": (c, "/claims?from=2024-12-01&state=in_progress"),
                 "claims list, sorted by reference": (c, "/claims?from=2024-12-01&sort=reference&dir=asc"),
                 "claims list, default range (3 months)": (c, "/claims"),
                 "claims list, one partner": (c, "/claims?from=2024-12-01&partner=demo-agency"),
                 "one claim": (c, f"/claims/{claim_id}"),
                 "runs list": (c, "/runs"),
                 f"one run of {args.claims} claims": (c, "/runs/BENCH")}
        ref = time_pages(pages, args.reps)
        c.post("/runs/BENCH/search", data={"csrf": console.csrf(c, "/runs/BENCH"), "q": "B-0009999"})
        ms = _times(lambda: c.get("/runs/BENCH"), args.reps)
        print(f"  one run of {args.claims} claims, searched by reference: p50 {_pct(ms, 50):.1f} ms "
              f"p99 {_pct(ms, 99):.1f} ms ({_pct(ms, 50) / (ref or 1):.1f}x the reference)")
        for fmt in ("csv", "xlsx"):  # a download, not a page: timed once, the most one export holds
            t0 = time.perf_counter()
            r = c.get(f"/claims/export.{fmt}?from=2024-12-01")
            assert r.status_code == 200
            print(f"  export {fmt} of {min(args.claims + 1, MAX_EXPORT)} claims (the most one holds): "
                  f"{time.perf_counter() - t0:.1f} s, {len(r.content) // 1024} KiB")
        print(f"  loadavg after: {Path('/proc/loadavg').read_text().split()[:3]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--claims", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--db", help="PostgreSQL URL (default: SQLite in a temp dir)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    assert PASSWORDS["anna"]  # the console's test logins: anna is a submit user of client demo
    in_schema(args.db, "bench_web", lambda db: _measure(args, db))


if __name__ == "__main__":
    main()
