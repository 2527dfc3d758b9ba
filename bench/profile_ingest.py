"""Where ingest time goes, stage by stage, on one process (run by hand).

    .venv/bin/python -m bench.profile_ingest [ROWS] [--repeat N] [--stages N]

Each line adds one stage to the previous one over the same rows and prints the cumulative rate and
the microseconds per row the stage adds. Times are CPU time of this process (``process_time``), the
best of ``--repeat`` passes per line, so other work on a shared machine hardly moves them.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date
from pathlib import Path

from bench.gen import write_csv


def main() -> None:
    from gateway.crypto.fieldcrypt import FieldCipher
    from gateway.domain.rules import check_claim
    from gateway.mapping.engine import compile_mapping
    from gateway.mapping.spec import load_mapping
    from gateway.readers import open_reader
    from gateway.store.claims import prepare_claim
    from gateway.store.fingerprints import fingerprint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stages", type=int, default=5, help="how many of the stages to run (2: read and map)")
    args = parser.parse_args()
    n = args.rows
    path = write_csv(Path(f"/tmp/gateway-bench-profile-{n}.csv"), n)
    spec = load_mapping(Path(__file__).resolve().parents[1] / "mappings" / "demo.yaml")
    cipher = FieldCipher({"k1": os.urandom(32)}, "k1", os.urandom(32))
    today = date(2025, 6, 1)
    stages = ["read", "map", "validate", "encrypt+encode", "fingerprint"]
    previous = 0.0
    for depth in range(1, min(args.stages, len(stages)) + 1):
        best = float("inf")
        for _ in range(args.repeat):
            with open_reader(path, spec.format) as reader:
                mapper = compile_mapping(spec, reader.header, file=reader.file)
                start = time.process_time()
                for src in reader:
                    if depth < 2:
                        continue
                    mapped = mapper.map_row(src, "demo")
                    if depth < 3 or mapped.claim is None:
                        continue
                    check_claim(mapped.claim, today)  # the rules and the limitation, as ingest calls them
                    if depth >= 4:
                        prepare_claim(cipher, mapped.claim, partner_id="demo-agency")  # routed, as in ingest
                    if depth >= 5:
                        fingerprint(cipher, mapped.claim)
                best = min(best, time.process_time() - start)
        per_row = 1e6 * best / n
        print(f"{' + '.join(stages[:depth]):56s} {n / best:>10,.0f} rows/s  +{per_row - previous:5.1f} us/row",
              flush=True)
        previous = per_row


if __name__ == "__main__":
    main()
