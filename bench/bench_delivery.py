"""Delivery benchmark: claims/s end to end (render, sign + encrypt, adapter) and backlog drain after an outage.

    .venv/bin/python -m bench.bench_delivery                      # directory + SFTP, 1 and 3 workers, outage
    .venv/bin/python -m bench.bench_delivery --claims 20000 --outage 60 --db postgresql://...
    .venv/bin/python -m bench.bench_delivery --profile            # cProfile of one directory run
    .venv/bin/python -m bench.bench_delivery --kinds directory --setups 1t --outage 0 --repeat 3

Claims are ingested first (not timed); then N dispatcher workers (threads of one process, or separate
processes like several ``gateway serve``; each its own ``Dispatcher``) drain the outbox into the
simulator, which then opens every batch and checks each claim arrived exactly once. Each worker loads its
keys before the clock starts, as a running gateway has. Next to claims/s the CPU time of the draining
process (threads) or of the worker processes (processes) is printed: with other work on the machine it
moves far less than wall time. A PostgreSQL server's own CPU is not in it; with threads on a server on this
machine, its backends' CPU is printed beside it. The outage run stops the SFTP simulator's
listener for ``--outage`` seconds while the workers keep trying (the outbox backs off per row), then
starts it again and measures how long the backlog takes to drain.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import multiprocessing
import os
import pstats
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncssh
from sqlalchemy import create_engine, event, func, select

from adapters.simulators.agency import Agency
from adapters.simulators.files import FolderAgency, load_partner_keys
from adapters.simulators.sftp_sim import SftpAgencySimulator
from bench.gen import write_csv
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from gateway.store.db import read_tx
from gateway.store.schema import outbox
from tests.conftest import write_config


class Setup:
    """A gateway in a temp dir with one partner, claims ingested and queued."""

    def __init__(self, kind: str, claims: int, db: str | None, batch: int, retry: dict[str, Any]) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
        self.agency = Agency("bench")
        self.sim: SftpAgencySimulator | None = None
        options: dict[str, Any] = {"path": "var/partners/bench"}
        if kind == "sftp":
            client = asyncssh.generate_private_key("ssh-ed25519")
            (self.base / "client-key").write_bytes(client.export_private_key())
            (self.base / "client-key").chmod(0o600)
            self.sim = SftpAgencySimulator(self.agency, self.base / "var/partners/bench",
                                           client.export_public_key().decode()).start()
            options = {"host": "127.0.0.1", "port": self.sim.port, "username": "gateway", "timeout": 10,
                       "client_key": str(self.base / "client-key"), "host_key": self.sim.host_key_line}
        db_url = db or f"sqlite:///{self.base / 'var' / 'gateway.db'}"
        self.schema: str | None = None
        if db and db.startswith("postgresql"):  # a fresh schema per run on a shared database
            self.schema = f"bench_{secrets.token_hex(4)}"
            with create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1)).begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
            db_url = f"{db}{'&' if '?' in db else '?'}options=-csearch_path%3D{self.schema}"
        self.db = db
        partner = {"adapter": kind, "certificate": "var/keys/partners/bench.crt", "options": options,
                   "sync": {"enabled": False}, "retry": retry}
        cfg = write_config(self.base, db_url, partners={"bench": partner},
                           clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "bench"}},
                           routing=[{"partner": "bench", "client": "demo"}],
                           dispatcher={"batch_size": batch, "backoff_base_seconds": 5, "backoff_max_seconds": 3600})
        init_keys(load_config(cfg))
        self.cfg = cfg
        self.app: App = build_app(cfg, migrate=True)
        if db and db.startswith("postgresql"):
            with self.app.engine.begin() as conn:  # a shared bench database: start from an empty outbox
                conn.exec_driver_sql("TRUNCATE outbox")
        ingest_file(self.app, write_csv(self.base / "claims.csv", claims), "demo")

    def open_rows(self) -> int:
        with read_tx(self.app.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(outbox)
                                    .where(outbox.c.status.in_(("pending", "leased")))).scalar_one())

    def close(self) -> None:
        self.app.close()
        if self.schema and self.db:
            with create_engine(self.db.replace("postgresql://", "postgresql+psycopg://", 1)).begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{self.schema}" CASCADE')
        if self.sim is not None:
            self.sim.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class Timing:
    """Wall seconds and CPU seconds of one drain (and the PostgreSQL backends' CPU, when measured)."""

    def __init__(self, wall: float, cpu: float, server_cpu: float | None = None) -> None:
        self.wall, self.cpu, self.server_cpu = wall, cpu, server_cpu


def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a local process (a PostgreSQL backend), None if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """The CPU time of the PostgreSQL backends serving an engine's connections (server on this machine).

    The pool is emptied first; each new connection's backend is noted with its CPU so far, and the
    difference is summed at the end (while the connections are still open). None on SQLite, or when
    the backends' /proc entries cannot be read (a server elsewhere).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.start: dict[int, float | None] = {}
        self.on = engine.dialect.name == "postgresql"
        if self.on:
            engine.dispose()
            event.listen(engine, "connect", self._connected)

    def _connected(self, dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = int(cur.fetchone()[0])
        self.start[pid] = _proc_cpu(pid)

    def stop(self) -> float | None:
        if not self.on:
            return None
        event.remove(self.engine, "connect", self._connected)
        total = 0.0
        for pid, began in self.start.items():
            now = _proc_cpu(pid)
            if began is None or now is None:
                return None
            total += now - began
        return total


def run_workers(app: App, workers: int, until_empty: bool = True, stop: threading.Event | None = None) -> Timing:
    """Drain with ``workers`` threads; wall time until no row is left, and the process's CPU time."""
    stop = stop or threading.Event()
    dispatchers = [Dispatcher(app, owner=f"bench-{i}") for i in range(workers)]
    for d in dispatchers:  # keys loaded before the clock starts, as a running gateway has them
        d._signing()

    def work(d: Dispatcher) -> None:
        try:
            while not stop.is_set():
                if not d.run_once():
                    if until_empty:
                        return
                    time.sleep(0.05)
        finally:
            d.close()

    server = ServerCpu(app.engine)
    c0, t0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return Timing(wall, cpu, server.stop())


def _drain_process(cfg: str, i: int, ready: Any, cpu: Any) -> None:
    app = build_app(cfg)
    d = Dispatcher(app, owner=f"bench-proc-{i}")
    d._signing()  # load keys before the clock starts, as a running gateway has
    ready.wait()
    c0 = time.process_time()
    d.drain()
    cpu.value = time.process_time() - c0
    d.close()
    app.close()


def run_processes(cfg: Path, workers: int) -> Timing:
    """Drain with ``workers`` processes (like several ``gateway serve``); wall time and their CPU time."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(workers + 1)
    cpus = [ctx.Value("d", 0.0) for _ in range(workers)]
    procs = [ctx.Process(target=_drain_process, args=(str(cfg), i, ready, cpu)) for i, cpu in enumerate(cpus)]
    for p in procs:
        p.start()
    ready.wait()  # every process has imported, connected and loaded its keys
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    return Timing(time.perf_counter() - t0, sum(cpu.value for cpu in cpus))


def throughput(kind: str, claims: int, workers: int, db: str | None, batch: int, procs: bool = False) -> Timing:
    s = Setup(kind, claims, db, batch, retry={})
    try:
        timing = run_processes(s.cfg, workers) if procs else run_workers(s.app, workers)
        keys = s.base / "var/keys/partners"  # the agency opens what arrived: proof of exactly once
        FolderAgency(s.agency, s.base / "var/partners/bench",
                     *load_partner_keys(keys / "bench.crt", keys / "bench.key"), "bench").scan()
        assert len(s.agency.cases) == claims and not s.agency.duplicates(), "not exactly once"
        return timing
    finally:
        s.close()


def outage(claims: int, outage_s: float, workers: int, db: str | None, batch: int, cap: float | None) -> float:
    """Seconds from the partner coming back until the backlog is delivered."""
    s = Setup("sftp", claims, db, batch, retry={"backoff_max_seconds": cap} if cap else {})
    assert s.sim is not None
    try:
        s.sim.refuse()
        stop = threading.Event()
        runner = threading.Thread(target=run_workers, args=(s.app, workers, False, stop))
        runner.start()
        time.sleep(outage_s)
        s.sim.accept()
        back = time.perf_counter()
        while s.open_rows():
            time.sleep(0.1)
        drained = time.perf_counter() - back
        stop.set()
        runner.join()
        return drained
    finally:
        s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claims", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1000, help="claims per partner file")
    ap.add_argument("--db", help="database URL (default: SQLite in a temp dir)")
    ap.add_argument("--outage", type=float, default=60.0, help="seconds the partner is down; 0 skips the run")
    ap.add_argument("--cap", type=float, default=None, help="partner retry.backoff_max_seconds for the outage run")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--outage-only", action="store_true", help="skip the throughput runs")
    ap.add_argument("--kinds", default="directory,sftp", help="partners to deliver to: directory, sftp")
    ap.add_argument("--setups", default="1t,3t,3p",
                    help="workers as threads (t) of one process or as processes (p), e.g. 1t,3p")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over every kind and setup")
    a = ap.parse_args()
    logging.disable(logging.WARNING)  # the outage run fails thousands of attempts on purpose
    if a.profile:
        s = Setup("directory", a.claims, a.db, a.batch, retry={})
        prof = cProfile.Profile()
        d = Dispatcher(s.app, owner="profile")
        d._signing()
        prof.enable()
        d.drain()  # in this thread, so the profiler sees it
        prof.disable()
        d.close()
        s.close()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        return
    setups = [(int(x[:-1]), x.endswith("p")) for x in a.setups.split(",") if x]
    for _ in range(a.repeat):
        for kind in () if a.outage_only else a.kinds.split(","):
            for workers, procs in setups:
                load = os.getloadavg()[0]
                t = throughput(kind, a.claims, workers, a.db, a.batch, procs)
                how = "processes" if procs else "threads"
                print(f"{kind:9s} workers={workers} ({how}) claims={a.claims} batch={a.batch}: "
                      f"{a.claims / t.wall:,.0f} claims/s, CPU {t.cpu:.2f} s ({t.cpu / a.claims * 1e6:.0f} ms per "
                      f"1k claims, {a.claims / t.cpu:,.0f} claims per CPU s)"
                      + (f", PostgreSQL backends' CPU {t.server_cpu:.2f} s" if t.server_cpu is not None else "")
                      + f", load {load:.1f}", flush=True)
    if a.outage:
        took = outage(a.claims, a.outage, 3, a.db, a.batch, a.cap)
        print(f"outage {a.outage:.0f} s, {a.claims} claims backlog, 3 workers, cap={a.cap}: drained in {took:.1f} s "
              f"after the partner came back", flush=True)


if __name__ == "__main__":
    main()
