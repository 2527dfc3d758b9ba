"""Peak RSS of `gateway ingest` on hostile and large files, and what running readers isolated costs.

    .venv/bin/python -m bench.bench_memory [--rows 1000000] [--skip-large]

Each file is ingested by `gateway ingest` as a process on a fresh SQLite database; its peak RSS is
taken from ``os.wait4`` (the process and every child it reaped: the reader's child process too).
The machine's load is shown as the ratio against a reference measured in the same run (a bare
interpreter, and an interpreter that imports the gateway CLI). Then the per-file start-up of an
isolated reader and its rows/s against the same reader in-process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.config import LimitsConfig
from gateway.mapping.spec import FormatSpec
from gateway.readers.base import READERS
from gateway.readers.isolated import IsolatedReader
from tests.conftest import write_config
from tests.fixtures.hostile import generate

GATEWAY = [sys.executable, "-m", "gateway.entrypoints.cli"]
FIELDS = ("fields:\n  creditor_reference: Rechnungsnr\n  claim_type: {const: service}\n  currency: {const: EUR}\n"
          "  principal_amount: Betrag\n  due_date: Faellig\n  debtor.last_name: Nachname\n")
XML_COLUMNS = ("  record_path: /Export/Block/Forderung\n"
               "  columns: {Rechnungsnr: Nr, Nachname: Name, Betrag: Betrag, Faellig: Faellig}\n")


# ru_maxrss counts what a child had before exec, i.e. a copy of its parent: a small runner process starts
# each measured command, so the figure is the command's own (and its reaped children's), not this process's.
RUNNER = ("import os, subprocess, sys\n"
          "out = open(sys.argv[1], 'w') if sys.argv[1] != '-' else subprocess.DEVNULL\n"
          "p = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL)\n"
          "_, status, usage = os.wait4(p.pid, 0)\n"
          "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n")


def peak(cmd: list[str], cwd: Path, stdout: Path | None = None) -> tuple[int, int, float]:
    """(exit code, peak RSS in MB of the command and its reaped children, seconds)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, str(stdout) if stdout else "-", *cmd], cwd=cwd,
                          capture_output=True, text=True, check=True)
    code, kb = done.stdout.split()
    return int(code), int(kb) // 1024, time.perf_counter() - started


def mapping(base: Path, kind: str, extra: str = "") -> Path:
    path = base / f"m-{kind}.yaml"
    path.write_text(f"version: 1\nclient: demo\nformat:\n  type: {kind}\n  decimal_separator: ','\n"
                    f"  date_formats: ['%d.%m.%Y']\n{extra}{FIELDS}", encoding="utf-8")
    return path


def ingest_peaks(work: Path, rows: int, skip_large: bool) -> None:
    files = [("XLSX A1+ZZ200000 (dense area)", generate.sparse_xlsx(work / "zz.xlsx", 200_000, 702), "xlsx", ""),
             ("XLSX A1+XFD1048576", generate.sparse_xlsx(work / "xfd.xlsx", 1_048_576, 16_384), "xlsx", ""),
             ("XLS A1+IV65536", generate.far_cell_xls(work / "far.xls"), "xls", ""),
             ("ODS 1 row x 1,000,000 repeats", generate.repeated_row_ods(work / "rep.ods"), "ods", ""),
             ("ODS 200 rows of 4,000,000 spaces each", generate.spaces_ods(work / "spaces.ods"), "ods", ""),
             ("XML 250k records + junk siblings", generate.junk_sibling_xml(work / "junk.xml", 250_000), "xml",
              XML_COLUMNS)]
    if not skip_large:
        files.append((f"XLSX {rows:,} rows", generate.large_xlsx(work / "large.xlsx", rows), "xlsx", ""))
    ref_bare = peak([sys.executable, "-c", "pass"], work)[1]
    # the CLI module imports its commands only when one runs: build the parser and import them, as a command does
    ref_cli = peak([sys.executable, "-c", "from gateway.entrypoints import cli, commands; cli.build_parser()"],
                   work)[1]
    print(f"load average {os.getloadavg()[0]:.2f}; reference peaks: bare interpreter {ref_bare} MB, "
          f"interpreter + gateway CLI imported {ref_cli} MB; ceiling limits.memory_mb {LimitsConfig().memory_mb} MB")
    print("| file | size | exit | status | peak RSS MB | x CLI reference | seconds |")
    print("|---|---|---|---|---|---|---|")
    for label, file, kind, extra in files:
        base = work / file.stem
        base.mkdir()
        cfg = write_config(base, f"sqlite:///{base}/gw.db")
        for args in (("keys", "init"), ("db", "upgrade")):
            subprocess.run([*GATEWAY, "--config", str(cfg), *args], cwd=base, check=True, capture_output=True)
        out = base / "out.json"
        cmd = [*GATEWAY, "--config", str(cfg), "ingest", str(file), "--client", "demo", "--json",
               "--mapping", str(mapping(base, kind, extra))]
        code, mb, seconds = peak(cmd, base, out)
        result = json.loads(out.read_text() or "{}")
        print(f"| {label} | {file.stat().st_size / 1e6:.3g} MB | {code} | {result.get('status')} | {mb} | "
              f"{mb / ref_cli:.2f} | {seconds:.1f} |")


def overhead(work: Path) -> None:
    small = generate.large_xlsx(work / "small.xlsx", 10)
    big = generate.large_xlsx(work / "big.xlsx", 100_000)
    xml = generate.junk_sibling_xml(work / "plain.xml", 100_000, junk=0)
    fx = FormatSpec(type="xlsx")
    fxml = FormatSpec(type="xml", record_path="/Export/Block/Forderung", columns={"Ref": "Nr", "Name": "Name"})
    limits = LimitsConfig()

    def inproc(path: Path, fmt: FormatSpec) -> object:
        module, _, name = READERS[fmt.type].partition(":")
        return getattr(importlib.import_module(module), name)(path, fmt)

    def isolated(path: Path, fmt: FormatSpec) -> object:
        return IsolatedReader(READERS[fmt.type], path, fmt, limits)

    print("| reader | per file (10 rows) ms | xlsx 100k rows/s | xml 100k rows/s |")
    print("|---|---|---|---|")
    for label, opener in (("in-process", inproc), ("isolated child", isolated)):
        started = time.perf_counter()
        for _ in range(10):
            r: object = opener(small, fx)
            list(r)  # type: ignore[call-overload]
            r.close()  # type: ignore[attr-defined]
        per_file = (time.perf_counter() - started) / 10 * 1000
        rates = []
        for path, fmt in ((big, fx), (xml, fxml)):
            best = 1e9
            for _ in range(2):
                started = time.perf_counter()
                r = opener(path, fmt)
                n = sum(1 for _ in r)  # type: ignore[attr-defined,misc]
                r.close()  # type: ignore[attr-defined]
                best = min(best, time.perf_counter() - started)
            rates.append(f"{n / best:,.0f}")
        print(f"| {label} ({READERS['xlsx'].rpartition(':')[2]}) | {per_file:.1f} | {rates[0]} | {rates[1]} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--only", choices=("ingest", "overhead"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        if args.only != "overhead":
            ingest_peaks(work, args.rows, args.skip_large)
        if args.only != "ingest":
            overhead(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
