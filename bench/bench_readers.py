"""Reader benchmark: the CSV and fixed-width readers per row, next to bare ``csv.reader`` (the anchor).

    .venv/bin/python -m bench.bench_readers            # 100k rows, best of 3
    .venv/bin/python -m bench.bench_readers --rows 20000 --repeat 5

CSV: the demo client's generated file (``bench.gen``: Windows-1252, ';', 21 columns), read by
``open_reader`` with the demo mapping's format, against ``csv.reader`` over the same file opened as
text (no line limits, no row numbers, no ``SourceRow``). Fixed width: the kasse fixture's lines repeated.
CPU time (process_time), alternating anchor and reader, because a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path

from bench.gen import write_csv
from gateway.mapping import load_mapping
from gateway.readers import open_reader

ROOT = Path(__file__).resolve().parents[1]


def best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Best CPU seconds of ``fn`` and the rows it read."""
    seconds, rows = float("inf"), 0
    for _ in range(repeat):
        start = time.process_time()
        rows = fn()
        seconds = min(seconds, time.process_time() - start)
    return seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    path = write_csv(Path(f"/tmp/gateway-bench-readers-{args.rows}.csv"), args.rows)
    spec = load_mapping(ROOT / "mappings" / "demo.yaml")

    def bare() -> int:
        with open(path, encoding="cp1252", newline="") as fh:
            return sum(1 for _ in csv.reader(fh, delimiter=";")) - 1

    def ours() -> int:
        with open_reader(path, spec.format) as reader:
            return sum(1 for _ in reader)

    kasse = load_mapping(ROOT / "tests" / "fixtures" / "kasse" / "mapping.yaml")
    lines = [line for line in (ROOT / "tests" / "fixtures" / "kasse" / "input.dat").read_bytes().split(b"\n")
             if line.strip()]
    fixed = Path(f"/tmp/gateway-bench-readers-{args.rows}.dat")
    fixed.write_bytes(b"\n".join(lines[i % len(lines)] for i in range(args.rows)) + b"\n")

    def fixed_width() -> int:
        with open_reader(fixed, kasse.format) as reader:
            return sum(1 for _ in reader)

    for name, fn in (("csv.reader (anchor)", bare), ("csv reader", ours), ("csv.reader (anchor)", bare),
                     ("csv reader", ours), ("fixed width", fixed_width)):
        seconds, rows = best(fn, args.repeat)
        print(f"{name:<20} {rows / seconds:>10,.0f} rows/s  {1e6 * seconds / rows:5.2f} us/row", flush=True)


if __name__ == "__main__":
    main()
