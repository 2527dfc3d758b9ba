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
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from bench.bench_list import _fill, _pct, _times  # noqa: E402
from bench.pgschema import in_schema  # noqa: E402
from gateway.bootstrap import build_app  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.entrypoints.web.app import build_web_app  # noqa: E402
from gateway.services.keys import init_keys  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from tests.integration.web.conftest import Console, web_config  # noqa: E402


def _measure(args: argparse.Namespace, db_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = write_config(base, db_url or f"sqlite:///{base / 'var' / 'gateway.db'}",
                           clients={c: {"name": c, "mapping": "demo", "default_partner": "demo-agency"}
                                    for c in ("demo", "other")},
                           web=web_config())
        init_keys(load_config(cfg))
        app = build_app(cfg, migrate=True)
        try:
            took = _fill(app, args.claims)
            if app.engine.dialect.name == "postgresql":
                with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE"))
            else:
                with app.engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE")
                    conn.commit()
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
            ref = None
            for name, (client, path) in pages.items():
                def get(client: TestClient = client, path: str = path) -> None:
                    r = client.get(path)
                    assert r.status_code == 200, (path, r.status_code)
                ms = _times(get, args.reps)
                p50, p99 = _pct(ms, 50), _pct(ms, 99)
                ref = ref or p50
                print(f"  {name}: p50 {p50:.1f} ms p99 {p99:.1f} ms ({p50 / ref:.1f}x the reference)")
            print(f"  loadavg after: {Path('/proc/loadavg').read_text().split()[:3]}")
        finally:
            app.close()


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
