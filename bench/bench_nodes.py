"""Scale-out benchmark: 1, 2 and 3 ``gateway serve`` nodes on one PostgreSQL database.

    .venv/bin/python -m bench.bench_nodes                          # intake 6 x 50k rows; delivery 20k, 0 / 300 ms
    .venv/bin/python -m bench.bench_nodes --nodes 1,2 --rows 5000 --claims 4000 --delays 0   # a quick look
    .venv/bin/python -m bench.bench_nodes --skip-intake --json out.json

Every run gets a fresh database (``bench_nodes_<hex>``, dropped afterwards) on ``--pg``. Intake: the nodes
watch one shared inbox; ``--files`` CSVs (``bench/gen.py`` rows, one client each, so the per-client ingest
lease lets them spread) are renamed into it at once; timed until the last ack exists. Delivery: ``--claims``
claims are ingested by this process first (not timed) with their outbox rows parked in the future; the
nodes start, the rows are made due at once, timed until every row is ``done`` (all claims handed over),
then the http simulator's books are checked for exactly-once. Measured per run from /proc and the
statistics views: CPU seconds of each node (with reaped children), of the PostgreSQL backends serving the
run's database and of every postgres process (the latter and WAL bytes are cluster-wide, so other users
of the server show up in them), pg_stat_database deltas, wait events of active backends sampled every
0.25 s, machine CPU busy share and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from adapters.simulators.agency import STATUS_MAP, Agency
from adapters.simulators.http_sim import HttpAgencySimulator
from bench.gen import HEADER, rows
from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from tests.conftest import write_config

GATEWAY = [sys.executable, "-m", "gateway.entrypoints.cli"]
TICK = os.sysconf("SC_CLK_TCK")
BATCH = 500  # claims per partner batch (--batch)
STATS = "xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, " \
        "tup_deleted, active_time"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process and of the children it has reaped; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return sum(int(v) for v in fields[11:15]) / TICK


def postgres_cpu() -> float:
    """CPU of every postgres process; exited backends are in the postmaster's reaped-children time."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(d.name)) or 0.0
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


class Monitor(threading.Thread):
    """Samples the run database's backends (CPU, wait events) and the load average until stopped."""

    def __init__(self, admin: str, db: str, exclude: int) -> None:
        super().__init__(daemon=True)
        self.db, self.exclude, self.conn = db, exclude, psycopg.connect(admin, autocommit=True)
        self.halt = threading.Event()
        self.base: dict[int, float] = {}  # backend pid -> CPU when first seen (0 if it started during the run)
        self.last: dict[int, float] = {}
        self.waits: Counter[str] = Counter()
        self.locked: Counter[str] = Counter()
        self.samples, self.max_backends = 0, 0
        self.load: list[float] = []
        self.sample(first=True)

    def sample(self, first: bool = False) -> None:
        q = ("SELECT pid, state, wait_event_type, wait_event, left(query, 70) FROM pg_stat_activity "
             "WHERE datname = %s AND pid <> %s")
        found = self.conn.execute(q, (self.db, self.exclude)).fetchall()
        self.max_backends = max(self.max_backends, len(found))
        for pid, state, wtype, wevent, query in found:
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self.base.setdefault(pid, cpu if first else 0.0)
                self.last[pid] = cpu
            if state == "active" and not first:
                self.waits[f"{wtype}:{wevent}" if wtype else "running"] += 1
                if wtype == "Lock":  # which statement waits on a lock (SQL text only, parameters are not shown)
                    self.locked[" ".join(query.split())] += 1
        if not first:
            self.samples += 1
            self.load.append(float(Path("/proc/loadavg").read_text().split()[0]))

    def run(self) -> None:
        while not self.halt.wait(0.25):
            self.sample()

    def finish(self) -> dict[str, Any]:
        self.halt.set()
        self.join()
        self.sample()
        self.conn.close()
        return {"pg_backend_cpu_s": round(sum(self.last[p] - self.base[p] for p in self.last), 2),
                "pg_backends_max": self.max_backends, "active_samples": self.samples,
                "waits": dict(self.waits.most_common(8)), "lock_waits": dict(self.locked.most_common(4)),
                "load1_max": max(self.load, default=0.0)}


class Cluster:
    """A fresh database, a gateway folder and ``n`` serve processes with their own node ids."""

    def __init__(self, pg: str, clients: list[str], partner: dict[str, Any], watcher: bool) -> None:
        self.pg, self.db = pg, f"bench_nodes_{secrets.token_hex(4)}"
        self.admin = f"{pg.rsplit('/', 1)[0]}/test"
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.db}"')
        self.url = f"{pg.rsplit('/', 1)[0]}/{self.db}"
        self.base = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
        self.cfg = write_config(
            self.base, self.url, partners={"bench": partner}, routing=[{"partner": "bench"}],
            clients={c: {"name": c, "mapping": "demo", "default_partner": "bench"} for c in clients},
            watcher={"enabled": watcher, "stable_seconds": 0.3, "sweep_seconds": 2},
            dispatcher={"enabled": not watcher, "poll_seconds": 0.2, "batch_size": BATCH, "lease_seconds": 60})
        for cid in clients:
            (self.base / "inbox" / cid / "upload").mkdir(parents=True, exist_ok=True)
        init_keys(load_config(self.cfg))
        build_app(self.cfg, migrate=True).close()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int) -> None:
        for i in range(n):
            with open(self.base / f"node-{i}.log", "wb") as log:
                self.procs.append(subprocess.Popen([*GATEWAY, "--config", str(self.cfg), "serve"], stdout=log,
                                                   stderr=subprocess.STDOUT, cwd=self.base,
                                                   env={**os.environ, "GATEWAY_NODE_ID": f"node-{i}"}))
        deadline = time.monotonic() + 120
        while not all("serve.ready" in (self.base / f"node-{i}.log").read_text() for i in range(n)):
            dead = [i for i, p in enumerate(self.procs) if p.poll() is not None]
            if time.monotonic() > deadline or dead:
                tail = (self.base / f"node-{dead[0] if dead else 0}.log").read_text()[-3000:]
                raise RuntimeError(f"node {dead} did not start (rc {[self.procs[i].returncode for i in dead]}):\n{tail}")
            time.sleep(0.1)

    def node_cpu(self) -> list[float]:
        return [cpu_seconds(p.pid) or 0.0 for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stats(self) -> dict[str, Any]:
        with psycopg.connect(self.admin, autocommit=True) as c:
            row = c.execute(f"SELECT {STATS} FROM pg_stat_database WHERE datname = %s", (self.db,)).fetchone()
        assert row is not None
        return dict(zip([s.strip() for s in STATS.split(",")], row))

    def wal_lsn(self) -> int:
        with psycopg.connect(self.admin, autocommit=True) as c:
            lsn = c.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        return int(lsn[0]) if lsn else 0

    def close(self, keep: bool) -> None:
        if any(p.poll() is None for p in self.procs):  # a failed or interrupted run
            self.stop()
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)


def measure(cl: Cluster, go: Any, done: Any, claims: int, poller: int = 0) -> dict[str, Any]:
    """Run ``go()``, poll ``done()``; CPU, statistics and waits from just before ``go`` to ``done``.

    ``poller``: the backend pid of the connection ``done`` polls with, left out of the backends' CPU.
    """
    before, wal0, node0 = cl.stats(), cl.wal_lsn(), cl.node_cpu()
    pg0, busy0, me0, mon = postgres_cpu(), machine_busy(), cpu_seconds(os.getpid()) or 0.0, Monitor(cl.admin, cl.db, poller)
    mon.start()
    t0 = time.perf_counter()
    go()
    while not done():
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    node1, pg1, busy1, me1, wal1 = cl.node_cpu(), postgres_cpu(), machine_busy(), cpu_seconds(os.getpid()) or 0.0, \
        cl.wal_lsn()
    watched = mon.finish()
    cl.stop()
    time.sleep(1.0)  # backends flush their statistics as they exit
    after = cl.stats()
    d = {k: (after[k] or 0) - (before[k] or 0) for k in after}
    nodes = [round(b - a, 2) for a, b in zip(node0, node1)]
    return {"wall_s": round(wall, 2), "claims_per_s": round(claims / wall), "node_cpu_s": nodes,
            "node_cpu_total_s": round(sum(nodes), 2), **watched, "pg_all_cpu_s": round(pg1 - pg0, 2),
            "bench_cpu_s": round(me1 - me0, 2), "machine_busy_pct": round(100 * (busy1[0] - busy0[0])
                                                                         / max(1, busy1[1] - busy0[1])),
            "wal_mb": round((wal1 - wal0) / 2**20, 1), "xact_commit": d["xact_commit"],
            "tup_written": d["tup_inserted"] + d["tup_updated"] + d["tup_deleted"],
            "blks": d["blks_read"] + d["blks_hit"], "pg_active_s": round(d["active_time"] / 1000, 2)}


def make_files(folder: Path, files: int, n: int) -> list[Path]:
    """``files`` demo-layout CSVs of ``n`` rows with references unique across files."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in range(files):
        path = folder / f"load-{f}-{n}.csv"
        if not path.exists():
            with open(path, "w", encoding="cp1252", newline="") as fh:
                fh.write(";".join(HEADER) + "\r\n")
                for i, r in enumerate(rows(n, seed=f)):
                    r[0] = f"F{f}-{i:07d}"
                    fh.write(";".join(f'"{v}"' if ";" in v else v for v in r) + "\r\n")
        out.append(path)
    return out


def intake(args: argparse.Namespace, nodes: int, sources: list[Path]) -> dict[str, Any]:
    clients = [f"c{i}" for i in range(len(sources))]
    partner = {"adapter": "directory", "certificate": "var/keys/partners/bench.crt",
               "options": {"path": "var/partners/bench"}, "sync": {"enabled": False}}
    cl = Cluster(args.pg, clients, partner, watcher=True)
    try:
        staged = [cl.base / "staging" / c / s.name for c, s in zip(clients, sources)]
        for src, dst in zip(sources, staged):
            dst.parent.mkdir(parents=True)
            shutil.copyfile(src, dst)
        acks = [cl.base / "inbox" / c / "ack" / f"{s.name}.ack.csv" for c, s in zip(clients, sources)]
        cl.start(nodes)

        def go() -> None:
            for c, s in zip(clients, staged):
                os.rename(s, cl.base / "inbox" / c / "upload" / s.name)  # at once, as a batch job would
        r = measure(cl, go, lambda: all(a.exists() for a in acks), args.rows * len(sources))
        with psycopg.connect(cl.url, autocommit=True) as c:
            got = c.execute("SELECT count(*), count(DISTINCT creditor_reference) FROM claims").fetchone()
        assert got == (args.rows * len(sources),) * 2, got
        files = [(cl.base / f"node-{i}.log").read_text().count("serve.ingested") for i in range(nodes)]
        return {"scenario": f"intake {len(sources)}x{args.rows}", "nodes": nodes, **r, "files_per_node": files}
    finally:
        cl.close(args.keep)


def delivery(args: argparse.Namespace, nodes: int, delay: float, source: Path) -> dict[str, Any]:
    agency = Agency("bench")
    agency.faults.delay_seconds = delay
    sim = HttpAgencySimulator(agency).start()
    partner = {"adapter": "http", "certificate": "var/keys/partners/bench.crt",
               "options": {"url": sim.url, "timeout": 30}, "status_map": STATUS_MAP, "sync": {"enabled": False}}
    cl = Cluster(args.pg, ["demo"], partner, watcher=False)
    try:
        app = build_app(cl.cfg)
        ingest_file(app, source, "demo", workers=0)
        app.close()
        deadline = time.monotonic() + 30  # the ingest's statistics must be in before the run's baseline
        while cl.stats()["tup_inserted"] < 2 * args.claims and time.monotonic() < deadline:
            time.sleep(0.2)
        with psycopg.connect(cl.url, autocommit=True) as c:  # parked until every node is up
            c.execute("UPDATE outbox SET available_at = now() + interval '1 day'")
            cl.start(nodes)
            open_q = "SELECT count(*) FROM outbox WHERE status <> 'done'"
            r = measure(cl, lambda: c.execute("UPDATE outbox SET available_at = now() - interval '1 second'"),
                        lambda: c.execute(open_q).fetchone() == (0,), args.claims, c.info.backend_pid)
            owners = c.execute("SELECT lease_owner, count(*) FROM outbox GROUP BY 1 ORDER BY 1").fetchall()
            events = c.execute("SELECT state, count(*) FROM claim_events GROUP BY 1 ORDER BY 1").fetchall()
            attempts = c.execute("SELECT sum(attempts) FROM outbox").fetchone()
        assert len(agency.cases) == args.claims and agency.duplicates() == {}, "not exactly once at the partner"
        return {"scenario": f"delivery {args.claims} @ {int(delay * 1000)} ms", "nodes": nodes, **r,
                "batches_per_node": {o: n for o, n in owners}, "events": {s: n for s, n in events},
                "lease_attempts": attempts[0] if attempts else None}
    finally:
        sim.stop()
        cl.close(args.keep)


def show(res: dict[str, Any], ref: dict[str, Any] | None) -> None:
    ratio = f"{res['claims_per_s'] / ref['claims_per_s']:.2f}x" if ref else "-"
    print(f"| {res['scenario']} | {res['nodes']} | {res['wall_s']} | {res['claims_per_s']} | {ratio} | "
          f"{' / '.join(str(c) for c in res['node_cpu_s'])} | {res['pg_backend_cpu_s']} "
          f"({res['pg_all_cpu_s']}) | {res['pg_active_s']} | {res['machine_busy_pct']} % / {res['load1_max']} | "
          f"{res['xact_commit']} | {res['tup_written']} | {res['wal_mb']} | {res['waits']} |", flush=True)


def main() -> None:
    global BATCH
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--nodes", default="1,2,3")
    p.add_argument("--files", type=int, default=6)
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--claims", type=int, default=20_000)
    p.add_argument("--delays", default="0,0.3", help="partner latency per request, seconds")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--skip-intake", action="store_true")
    p.add_argument("--skip-delivery", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the gateway folders (logs) of each run")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its nodes, drops its database
    BATCH = args.batch
    counts = [int(n) for n in args.nodes.split(",")]
    cache = Path(tempfile.gettempdir()) / "bench-nodes-files"
    print(f"cores={os.cpu_count()} loadavg={Path('/proc/loadavg').read_text().split()[:3]}")
    print("| run | nodes | wall s | claims/s | vs 1 node | CPU s per node | PG backends CPU s (all postgres) | "
          "PG active s | machine busy / load | commits | tuples written | WAL MB | wait samples |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    results: list[dict[str, Any]] = []
    if not args.skip_intake:
        sources = make_files(cache, args.files, args.rows)
        ref = None
        for n in counts:
            results.append(intake(args, n, sources))
            ref = ref or results[-1]
            show(results[-1], ref if n != counts[0] else None)
            save(args, results)
    if not args.skip_delivery:
        source = make_files(cache / "delivery", 1, args.claims)[0]
        for delay in (float(d) for d in args.delays.split(",")):
            ref = None
            for n in counts:
                results.append(delivery(args, n, delay, source))
                ref = ref or results[-1]
                show(results[-1], ref if n != counts[0] else None)
                save(args, results)
    print(f"loadavg={Path('/proc/loadavg').read_text().split()[:3]}")


def save(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    if args.json:  # after every run, so that a failed run keeps the ones before it
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
