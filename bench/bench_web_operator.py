"""Page speed of the operator's console pages with 100k claims of one client stored: partners (its backlog
counts the claims waiting per partner), clients, one client, mappings, one mapping workshop, outbox, runs and
the claims of every client.

The same store as ``bench_web.py`` (``bench_list._fill``: N claims of one client with their projection rows,
states spread like a book of collection cases), requested through Starlette's TestClient as the operator login;
p50/p99 per page, each as a ratio to the login page (no database) measured in the same run.

    python bench/bench_web_operator.py [--claims 100000] [--reps 100] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.testclient import TestClient  # noqa: E402

from bench.bench_web import CLIENTS, time_pages  # noqa: E402
from bench.bench_list import filled_app  # noqa: E402
from bench.pgschema import in_schema  # noqa: E402
from gateway.entrypoints.web.app import build_web_app  # noqa: E402
from tests.integration.web.conftest import Console, web_config  # noqa: E402


def _measure(args: argparse.Namespace, db_url: str | None) -> None:
    with filled_app(db_url, args.claims, clients=CLIENTS, web=web_config()) as (app, took):
        console = Console(app, build_web_app(app))
        op: TestClient = console.client("olga")
        anon = console.client()
        db = "PostgreSQL" if db_url else "SQLite (WAL)"
        print(f"{db}: {args.claims} claims stored in {took:.0f} s; cores={os.cpu_count()} "
              f"loadavg={Path('/proc/loadavg').read_text().split()[:3]}; {args.reps} requests per page")
        pages = {"login page (reference, no database)": (anon, "/login"),
                 "partners": (op, "/operator/partners"),
                 "clients": (op, "/operator/clients"),
                 "one client": (op, "/operator/clients/demo"),
                 "mappings": (op, "/operator/mappings"),
                 "one mapping workshop": (op, "/operator/mappings/demo"),
                 "outbox, dead letters": (op, "/operator/outbox"),
                 "runs of every client": (op, "/operator/runs"),
                 "claims of every client": (op, "/operator/claims")}
        time_pages(pages, args.reps)
        print(f"  loadavg after: {Path('/proc/loadavg').read_text().split()[:3]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--claims", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--db", help="PostgreSQL URL (default: SQLite in a temp dir)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    in_schema(args.db, "bench_web_operator", lambda db: _measure(args, db))


if __name__ == "__main__":
    main()
