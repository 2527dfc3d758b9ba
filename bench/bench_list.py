"""List a page of claims at 1M stored claims: the projection (claim_current) against the old latest-event query.

Stores N claims of one client straight through the store (``claims.insert_prepared`` in chunks, with the
projection rows it writes; personal data is a fixed placeholder, lists never decrypt it), spread over
states as a book of collection cases is, then times the ``ListClaims`` use case
(``claim_queries.list_claims``: a page of 50, a state filter, newest change first, with the total) and the
query it replaced (the latest event of every claim, and a count over the same), in the same run.

    python bench/bench_list.py [--claims 1000000] [--db postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Connection, and_, func, select, text  # noqa: E402

from gateway.bootstrap import App, build_app  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.domain.lifecycle import State  # noqa: E402
from gateway.services import claim_queries  # noqa: E402
from gateway.services.keys import init_keys  # noqa: E402
from gateway.store import claims as claim_store  # noqa: E402
from gateway.store.claim_search import ClaimFilter  # noqa: E402
from gateway.store.db import write_tx  # noqa: E402
from gateway.store.schema import claim_events, claims, submissions  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from bench.pgschema import in_schema  # noqa: E402

# A book of collection cases: most at the agency, some closed, a few waiting.
MIX = [(State.IN_PROGRESS, 40), (State.HANDED_OVER, 15), (State.CLOSED_PAID, 20), (State.CLOSED_UNCOLLECTIBLE, 5),
       (State.INSTALMENT_PLAN, 5), (State.HELD, 10), (State.QUEUED, 5)]
CHUNK = 5000


def _fill(app: App, n: int) -> float:
    """Store ``n`` claims (one intake event each, states per MIX); returns seconds taken."""
    started = time.perf_counter()
    wheel = [s for s, share in MIX for _ in range(share)]
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with write_tx(app.engine) as conn:
        sid = conn.execute(submissions.insert().values(
            reference="BENCH", client_id="demo", channel="cli", filename="bench", sha256="0" * 64, size=0,
            status="completed", received_at=base).returning(submissions.c.id)).scalar_one()
    for start in range(0, n, CHUNK):
        items = []
        for i in range(start, min(n, start + CHUNK)):
            ref = f"B-{i:08d}"
            cols = ("demo", ref, "demo-agency", "service", "EUR", 10_000 + i % 5000, 10_000 + i % 5000, f"INV-{i}",
                    None, None, None, b"placeholder", '{"client_id":"demo","creditor_reference":"%s",'
                    '"principal_amount":"100.00","debtor":{}}' % ref, 0, 0)
            items.append((cols, wheel[(i * 7) % len(wheel)], i, None))
        with write_tx(app.engine) as conn:
            claim_store.insert_prepared(conn, sid, items, now=base + timedelta(seconds=start // 10))
    return time.perf_counter() - started


def _old_search(conn: Connection, client_id: str, state: str, limit: int) -> tuple[list[Any], int]:
    """The list query before the projection (claim_search.search as it was): latest event per claim."""
    latest = (select(claim_events.c.claim_id, func.max(claim_events.c.id).label("event_id"))
              .where(claim_events.c.client_id == client_id).group_by(claim_events.c.claim_id).subquery())
    ev = claim_events.alias("ev")
    base = (select(claims.c.id.label("claim_id"), claims.c.creditor_reference, claims.c.open_minor, ev.c.state,
                   ev.c.created_at.label("last_change"))
            .join(latest, latest.c.claim_id == claims.c.id).join(ev, ev.c.id == latest.c.event_id)
            .where(and_(claims.c.client_id == client_id, ev.c.state.in_([state]))))
    total = int(conn.execute(select(func.count()).select_from(base.subquery())).scalar_one())
    rows = list(conn.execute(base.order_by(ev.c.created_at.desc(), claims.c.id.desc()).limit(limit)))
    return rows, total


def _times(fn: Callable[[], Any], reps: int) -> list[float]:
    fn()  # warm caches and the statement cache once
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return sorted(out)


def _pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


@contextmanager
def filled_app(db_url: str | None, n: int, **config: Any) -> Iterator[tuple[App, float]]:
    """A gateway in a temp dir with ``n`` claims of client demo stored (``_fill``) and the database's
    statistics taken, and how long storing took; closed afterwards. ``config``: write_config overrides."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = write_config(base, db_url or f"sqlite:///{base / 'var' / 'gateway.db'}", **config)
        init_keys(load_config(cfg))
        app = build_app(cfg, migrate=True)
        try:
            took = _fill(app, n)
            if app.engine.dialect.name == "postgresql":
                # What autovacuum does to a table that stopped growing: statistics, and the visibility map
                # that lets a count read the index alone.
                with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE"))
            else:
                with app.engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE")
                    conn.commit()
            yield app, took
        finally:
            app.close()


def _measure(args: argparse.Namespace, db_url: str | None) -> None:
    with filled_app(db_url, args.claims) as (app, took):
        db = "PostgreSQL" if db_url else "SQLite (WAL)"
        print(f"{db}: {args.claims} claims stored in {took:.0f} s; "
              f"cores={os.cpu_count()} loadavg={Path('/proc/loadavg').read_text().split()[:3]}")
        for state in ("in_progress", "instalment_plan"):
            f = ClaimFilter(states=[state], sort="last_change", limit=50)
            new = _times(lambda: claim_queries.list_claims(app, "demo", f), args.reps)
            rows, total, exact = claim_queries.list_claims(app, "demo", f)
            with app.engine.connect() as conn:
                old = _times(lambda: _old_search(conn, "demo", state, 50), args.old_reps)
                old_rows, old_total = _old_search(conn, "demo", state, 50)
            assert (total == old_total) is exact and [r["claim_id"] for r in rows] == [r[0] for r in old_rows]
            print(f"  state={state} ({old_total} match, total {total} {'exact' if exact else 'at least'}): projection p50 {_pct(new, 50):.1f} ms p99 {_pct(new, 99):.1f} ms"
                  f" | old query p50 {_pct(old, 50):.0f} ms p99 {_pct(old, 99):.0f} ms"
                  f" | {_pct(old, 50) / _pct(new, 50):.0f}x")
        paged = ClaimFilter(states=["in_progress"], sort="last_change", limit=50, offset=5000)
        deep = _times(lambda: claim_queries.list_claims(app, "demo", paged), args.reps)
        print(f"  state=in_progress offset 5000: p50 {_pct(deep, 50):.1f} ms p99 {_pct(deep, 99):.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--claims", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--old-reps", type=int, default=5)
    p.add_argument("--db", help="PostgreSQL URL (default: SQLite in a temp dir)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    in_schema(args.db, "bench_list", lambda db: _measure(args, db))


if __name__ == "__main__":
    main()
