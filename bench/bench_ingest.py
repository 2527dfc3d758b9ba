"""Ingest benchmark: rows/s and peak memory, ours next to plain readers and pandas (run by hand).

    .venv/bin/python -m bench.bench_ingest                 # CSV 100k + 1M, XLSX and XML 50k
    .venv/bin/python -m bench.bench_ingest --csv 100000    # quicker
    .venv/bin/python -m bench.bench_ingest --csv 100000 --xlsx --xml --pg postgresql://postgres@127.0.0.1:5432/test
                                                           # also ours on PostgreSQL (a throwaway schema)
    .venv/bin/python -m bench.bench_ingest run MODE FILE   # one measurement (used by the driver)

Every measurement runs in its own fresh process, so its peak RSS is its own (with worker processes: the
largest of the processes, not their sum). "ours" is the whole ingest (read, map, validate, encrypt, store in
SQLite, write the ack) through ``ingest_file``: ``ours-1p`` in one process, ``ours-2p`` / ``ours-3p`` with one /
two worker processes that prepare and store chunks in file order while this one reads and acks; ``-pg`` the same
on PostgreSQL. ``store-floor`` is SQLite alone writing the rows ``ours-1p`` wrote (see ``_store_floor``): the
least any ingest that stores those rows in that schema can cost. "vs anchor" is wall-time speed against the format's reference measured last in the same run
(pandas ``read_csv`` + ``to_sql`` for CSV, bare calamine for XLSX, bare ``iterparse`` for XML).
pandas and openpyxl come from the optional ``bench`` extra.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gen import HEADER, rows, write_csv

WORK = Path("/tmp/gateway-bench")
_TIMED: dict[str, float] = {}
XML_MAPPING = """client: demo
format:
  type: xml
  record_path: /Export/Forderung
  decimal_separator: ','
  thousands_separator: '.'
  columns: {cols}
fields:
{fields}"""


def _demo_mapping(kind: str) -> str:
    root = Path(__file__).resolve().parents[1]
    text = (root / "mappings" / "demo.yaml").read_text(encoding="utf-8")
    if kind == "xlsx":
        return text.replace("type: csv", "type: xlsx")
    if kind == "xml":
        body = text.split("\nfields:\n", 1)[1]
        cols = "{" + ", ".join(f"'{h}': '{h.replace('-', '_')}'" for h in HEADER) + "}"
        return XML_MAPPING.format(cols=cols, fields=body)
    return text


def write_xlsx(path: Path, n: int) -> Path:
    import xlsxwriter
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    ws = wb.add_worksheet("Forderungen")
    ws.write_row(0, 0, HEADER)
    for i, values in enumerate(rows(n), start=1):
        ws.write_row(i, 0, values)
    wb.close()
    return path


def write_xml(path: Path, n: int) -> Path:
    from xml.sax.saxutils import escape
    tags = [h.replace("-", "_") for h in HEADER]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<Export>\n')
        for values in rows(n):
            fh.write("<Forderung>" + "".join(f"<{t}>{escape(v)}</{t}>" for t, v in zip(tags, values) if v)
                     + "</Forderung>\n")
        fh.write("</Export>\n")
    return path


def _ours(path: Path, kind: str, workers: int, pg: str | None = None) -> int:
    if pg:
        from bench.pgschema import in_schema
        box: list[int] = []
        in_schema(pg, "bench_ingest", lambda url: box.append(_ours_on(path, kind, workers, url)))
        return box[0]
    return _ours_on(path, kind, workers, None)


def _ours_on(path: Path, kind: str, workers: int, url: str | None) -> int:
    from gateway.bootstrap import build_app
    from gateway.config import load_config
    from gateway.services.ingest import ingest_file
    from gateway.services.keys import init_keys
    from tests.conftest import write_config
    base = path.parent / f"gw-{path.stem}-{workers}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    cfg = write_config(base, url or f"sqlite:///{base / 'var' / 'gateway.db'}")
    (base / "mappings" / "demo.yaml").write_text(_demo_mapping(kind), encoding="utf-8")
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    start, cpu = time.perf_counter(), _cpu()  # set-up (keys, schema) is not ingest: time ingest_file only
    result = ingest_file(app, path, "demo", workers=workers)
    _TIMED["seconds"], _TIMED["cpu"] = time.perf_counter() - start, _cpu() - cpu
    assert result.status == "completed" and result.rejected == 0, (result.status, result.error)
    return result.rows


INTAKE_TABLES = ("claims", "claim_events", "claim_current", "claim_keys", "claim_fingerprints")


def _store_floor(path: Path) -> int:
    """What SQLite alone costs for the rows an ingest writes: the five intake tables' rows of the
    ``ours-1p`` run of the same file, inserted again (5,000 claims per transaction, ``executemany``, the
    gateway's pragmas) into an empty copy of its migrated schema. Nothing else runs: no reading, mapping,
    validation or encryption. Only the inserts are timed."""
    import sqlite3
    source = path.parent / f"gw-{path.stem}-0" / "var" / "gateway.db"
    if not source.exists():
        raise SystemExit(f"{source} missing: run the ours-1p mode on {path.name} first")
    src = sqlite3.connect(source)
    target = path.parent / f"floor-{path.stem}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(target, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        db.execute(f"PRAGMA {pragma}")
    for (sql,) in src.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                              "ORDER BY type = 'table' DESC"):
        db.execute(sql)
    for table in ("submissions", "client_keys"):  # what the intake rows refer to
        rows = src.execute(f"SELECT * FROM {table}").fetchall()
        if rows:
            db.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * len(rows[0]))})", rows)
    data = {t: src.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in INTAKE_TABLES}
    inserts = {t: f"INSERT INTO {t} VALUES ({','.join('?' * len(data[t][0]))})" for t in INTAKE_TABLES}
    n = len(data["claims"])
    start, cpu = time.perf_counter(), _cpu()
    for i in range(0, n, 5000):
        db.execute("BEGIN")
        for t in INTAKE_TABLES:
            db.executemany(inserts[t], data[t][i:i + 5000])
        db.execute("COMMIT")
    _TIMED["seconds"], _TIMED["cpu"] = time.perf_counter() - start, _cpu() - cpu
    db.close()
    return n


def _csv_reader(path: Path) -> int:
    n = 0
    with open(path, encoding="cp1252", newline="") as fh:
        for _ in csv.reader(fh, delimiter=";"):
            n += 1
    return n - 1


def _pandas(path: Path) -> int:
    import sqlite3

    import pandas as pd
    df = pd.read_csv(path, sep=";", encoding="cp1252", decimal=",", thousands=".", dtype=str)
    con = sqlite3.connect(path.parent / f"pandas-{path.stem}.db")
    df.to_sql("claims", con, if_exists="replace", index=False, chunksize=10_000)
    con.close()
    return len(df)


def _calamine(path: Path) -> int:
    import python_calamine
    book = python_calamine.CalamineWorkbook.from_path(str(path))
    return sum(1 for _ in book.get_sheet_by_index(0).iter_rows()) - 1


def _openpyxl(path: Path) -> int:
    import openpyxl
    book = openpyxl.load_workbook(path, read_only=True)
    n = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True)) - 1
    book.close()
    return n


def _iterparse(path: Path) -> int:
    from lxml import etree
    n = 0
    for _, elem in etree.iterparse(str(path), tag="Forderung", resolve_entities=False, no_network=True):
        [c.text for c in elem]
        elem.clear(keep_tail=False)
        while elem.getprevious() is not None:
            del elem.getparent()[0]
        n += 1
    return n


PG_URL: str | None = os.environ.get("BENCH_PG_URL") or None  # the driver passes --pg to its children this way
MODES: dict[str, Any] = {
    "ours-1p": lambda p: _ours(p, p.suffix.lstrip("."), 0), "ours-2p": lambda p: _ours(p, p.suffix.lstrip("."), 1),
    "ours-3p": lambda p: _ours(p, p.suffix.lstrip("."), 2),
    "ours-1p-pg": lambda p: _ours(p, p.suffix.lstrip("."), 0, PG_URL),
    "ours-2p-pg": lambda p: _ours(p, p.suffix.lstrip("."), 1, PG_URL),
    "ours-3p-pg": lambda p: _ours(p, p.suffix.lstrip("."), 2, PG_URL),
    "store-floor": _store_floor, "csv.reader": _csv_reader, "pandas": _pandas, "calamine": _calamine, "openpyxl": _openpyxl,
    "iterparse": _iterparse,
}


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (ingest's worker processes, reader children).

    On a shared machine this moves far less with the load than wall time; a PostgreSQL server's own CPU
    is not in it.
    """
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_one(mode: str, path: Path) -> dict[str, Any]:
    start, cpu = time.perf_counter(), _cpu()
    n = MODES[mode](path)
    seconds = _TIMED.get("seconds", time.perf_counter() - start)
    cpu_s = _TIMED.get("cpu", _cpu() - cpu)
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # ours-2p: the worker's own peak
    return {"mode": mode, "file": path.name, "rows": n, "seconds": round(seconds, 2), "rows_per_s": round(n / seconds),
            "cpu_s": round(cpu_s, 2), "rows_per_cpu_s": round(n / cpu_s), "peak_rss_mb": round(peak / 1024)}


_ANCHORS = {"csv": "pandas", "xlsx": "calamine", "xml": "iterparse"}  # the reference for each format
_anchor_seconds: dict[str, float] = {}


def measure(mode: str, path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_ingest", "run", mode, str(path)],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                         env={**os.environ, "BENCH_PG_URL": PG_URL or ""})
    if out.returncode != 0:
        print(f"| {path.name} | {mode} | failed: {out.stderr.strip().splitlines()[-1:]} |", flush=True)
        return {}
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    anchor = _ANCHORS.get(path.suffix.lstrip("."))
    if mode == anchor:
        _anchor_seconds[path.name] = res["seconds"]
    # Speed against the anchor's last measurement of the same file in this run (wall time: rows/s ratio)
    ratio = (f"{_anchor_seconds[path.name] / res['seconds']:.2f}x" if path.name in _anchor_seconds
             and (mode.startswith("ours") or mode == "store-floor") else "")
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"| {res['file']} | {mode} | {res['rows']:,} | {res['seconds']} | {res['rows_per_s']:,} | {res['cpu_s']} | "
          f"{res['rows_per_cpu_s']:,} | {res['peak_rss_mb']} | {ratio} | {load} |", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--xlsx", type=int, nargs="*", default=[50_000])
    ap.add_argument("--xml", type=int, nargs="*", default=[50_000])
    ap.add_argument("--modes", nargs="*", default=None, help="only these modes")
    ap.add_argument("--pg", default=None, help="PostgreSQL URL: also measure ours on it (CSV)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over all modes (a shared machine is noisy)")
    args, rest = ap.parse_known_args()
    global PG_URL
    PG_URL = args.pg or PG_URL
    if rest[:1] == ["run"]:
        print(json.dumps(run_one(rest[1], Path(rest[2]))))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    print("| file | mode | rows | seconds | rows/s | CPU s | rows/CPU s | peak RSS MB | vs anchor | load |\n"
          "|---|---|---|---|---|---|---|---|---|---|", flush=True)
    csv_modes = ("csv.reader", "pandas", "ours-1p", "store-floor", "ours-2p", "ours-3p") + (
        ("ours-1p-pg", "ours-2p-pg", "ours-3p-pg") if PG_URL else ())
    plan = [(write_csv, "csv", n, csv_modes) for n in args.csv]
    plan += [(write_xlsx, "xlsx", n, ("calamine", "openpyxl", "ours-1p", "ours-3p")) for n in args.xlsx]
    plan += [(write_xml, "xml", n, ("iterparse", "ours-1p", "ours-3p")) for n in args.xml]
    for writer, ext, n, modes in plan:
        path = WORK / f"claims-{n}.{ext}"
        if not path.exists():
            writer(path, n)
        for _ in range(args.repeat):  # interleaved: each round measures every mode once
            for mode in modes:
                if args.modes is None or mode in args.modes:
                    measure(mode, path)
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)


if __name__ == "__main__":
    main()
