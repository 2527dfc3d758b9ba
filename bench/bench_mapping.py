"""Mapping engine benchmark: rows/s of ``map_rows`` alone (no reading, validation or store), by mapping style.

    .venv/bin/python -m bench.bench_mapping            # 100k rows each, best of 7
    .venv/bin/python -m bench.bench_mapping --rows 20000 --repeat 3

Rows are read once from a golden fixture and repeated; only mapping is timed. "plain" is the demo
mapping (column copies, parsers, a value map); "transforms" the fitnessplus mapping (splits, case,
built-in maps, a year pivot, a hold condition); "grouped" the handwerk mapping (regex, implied decimals,
when/else, partner rules, invoices grouped by customer). The fixtures' rows with errors (2 of 12, 2 of 7,
1 of 9) are kept: the generated row function hands them to the careful path. The last column maps the same
rows with the careful path alone (``RowMapper.map_row_careful``, every row field by field), for comparison.
Best-of-N of CPU time (process_time), because a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gateway.mapping import compile_mapping, load_mapping
from gateway.mapping.engine import date_columns
from gateway.readers import SourceRow, open_reader

ROOT = Path(__file__).resolve().parents[1]
CASES = {"plain": (ROOT / "mappings" / "demo.yaml", ROOT / "examples" / "demo.csv"),
         "transforms": (ROOT / "tests/fixtures/fitnessplus/mapping.yaml", ROOT / "tests/fixtures/fitnessplus/input.csv"),
         "grouped": (ROOT / "tests/fixtures/handwerk/mapping.yaml", ROOT / "tests/fixtures/handwerk/input.csv")}


def measure(mapping: Path, data: Path, rows: int, repeat: int, careful: bool = False) -> float:
    """Best rows/s of mapping ``rows`` rows (the file's rows repeated, physical row numbers increasing)."""
    spec = load_mapping(mapping)
    with open_reader(data, spec.format, date_columns=date_columns(spec)) as reader:
        header, sample = reader.header, list(reader)
    key = header.index(spec.group.columns[0]) if spec.group else None
    source = []
    for i in range(rows):
        values = list(sample[i % len(sample)].values)
        if key is not None:  # every pass over the sample gets its own customers, so groups stay contiguous
            values[key] = f"{values[key]}{i // len(sample)}"
        source.append(SourceRow(i + 2, values))
    mapper = compile_mapping(spec, header, file=data.name)
    if careful:
        mapper.map_row = mapper.map_row_careful
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _mapped in mapper.map_rows(source, "bench"):
            pass
        best = min(best, time.process_time() - start)
    return rows / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"{'':<11} {'map_row':>16} {'careful path':>16}")
    for name, (mapping, data) in CASES.items():
        fast = measure(mapping, data, args.rows, args.repeat)
        careful = measure(mapping, data, args.rows, args.repeat, careful=True)
        print(f"{name:<11} {fast:>10,.0f} rows/s {careful:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
