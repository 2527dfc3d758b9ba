"""SFTP inbox benchmark: upload-close-to-ack latency for a 10,000-row CSV, and throughput with 10 clients.

Run: ``.venv/bin/python -m bench.bench_sftp [--rows 10000] [--clients 10] [--files 5] [--db URL]``.
A real asyncssh server (the gateway's) and the asyncssh client on loopback; SQLite unless ``--db`` (PostgreSQL: in a
throwaway schema, dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from bench.pgschema import in_schema

from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.sftp_support import ServerThread, client_csv, make_key, sftp_clients_config


def _wait_file(path: Path, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path}")
        time.sleep(0.002)
    return time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--files", type=int, default=5, help="files per client in the throughput run")
    ap.add_argument("--throughput-rows", type=int, default=1000)
    ap.add_argument("--db", help="database URL (default: SQLite in the temp dir)")
    args = ap.parse_args()
    # PostgreSQL: a throwaway schema, so that files of an earlier run are not taken as duplicates (acked at once)
    in_schema(args.db, "bench_sftp", lambda url: _run(args, url))


def _run(args: argparse.Namespace, db: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as tmp:
        base = Path(tmp)
        keys = {f"c{i}": make_key(base / "keys", f"c{i}") for i in range(args.clients)}
        cfg = write_config(base, db or f"sqlite:///{base / 'var' / 'gateway.db'}",
                           sftp={"enabled": True, "port": 0}, clients=sftp_clients_config(keys),
                           routing=[{"partner": "demo-agency"}], dispatcher={"enabled": False})
        init_keys(load_config(cfg))
        app = build_app(cfg, migrate=True)
        inbox = app.config.inbox_dir
        with ServerThread(app) as srv:
            # -- latency: close of the upload handle -> ack file in place
            lat = []
            for i in range(3):
                src = client_csv(base / f"lat{i}.csv", args.rows, f"L{i}")
                data = src.read_bytes()

                async def upload() -> float:
                    async with srv.connect(keys["c0"].private, "c0") as conn, conn.start_sftp_client() as sftp:
                        async with sftp.open(f"/upload/{src.name}", "wb") as f:
                            await f.write(data)
                            t0 = time.perf_counter()
                    return t0

                t0 = asyncio.run(upload())
                lat.append(_wait_file(inbox / "c0" / "ack" / f"{src.name}.ack.csv") - t0)
            # -- throughput: every client uploads its files at once
            files = {cid: [client_csv(base / f"{cid}-{j}.csv", args.throughput_rows, f"T{cid}{j}", seed=j)
                           for j in range(args.files)] for cid in keys}

            async def client(cid: str) -> None:
                async with srv.connect(keys[cid].private, cid) as conn, conn.start_sftp_client() as sftp:
                    for f in files[cid]:
                        await sftp.put(str(f), f"/upload/{f.name}")

            async def all_clients() -> None:
                await asyncio.gather(*(client(cid) for cid in keys))

            t0 = time.perf_counter()
            asyncio.run(all_clients())
            t_up = time.perf_counter() - t0
            t_end = max(_wait_file(inbox / cid / "ack" / f"{f.name}.ack.csv") for cid in keys for f in files[cid])
        app.close()
        n_files = args.clients * args.files
        total = t_end - t0
        print(yaml.safe_dump({
            "latency_close_to_ack_s": {"rows": args.rows, "median": round(statistics.median(lat), 3),
                                       "runs": [round(x, 3) for x in lat]},
            "throughput": {"clients": args.clients, "files": n_files, "rows_per_file": args.throughput_rows,
                           "upload_s": round(t_up, 2), "last_ack_s": round(total, 2),
                           "files_per_s": round(n_files / total, 1),
                           "rows_per_s": round(n_files * args.throughput_rows / total)},
        }, sort_keys=False))


if __name__ == "__main__":
    main()
