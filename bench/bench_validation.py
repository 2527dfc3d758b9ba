"""CPU per row of the domain checks ingest runs on every claim: rules, size limits and limitation.

    .venv/bin/python -m bench.bench_validation [--rows N] [--repeat R] [--before DIR]

The demo CSV's rows are read and mapped once (as ``bench/profile_ingest.py`` does); then only the checks
are timed, in CPU time (``time.process_time``, so other processes on a shared machine do not count), best of
R passes over all claims. ``--before DIR`` times another checkout of the project (e.g. a
``git worktree`` of an earlier commit) in a child process, interleaved with this one (before, after,
after, before), and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import msgspec

from gateway.domain.model import Claim, Payment

TODAY = date(2025, 6, 1)  # as in profile_ingest: the demo rows fall due in February 2025


def _claims(n: int) -> list[Claim]:
    from bench.gen import write_csv
    from gateway.mapping.engine import compile_mapping
    from gateway.mapping.spec import load_mapping
    from gateway.readers import open_reader

    path = write_csv(Path(f"/tmp/gateway-bench-validation-{n}.csv"), n)
    spec = load_mapping(Path(__file__).resolve().parents[1] / "mappings" / "demo.yaml")
    with open_reader(path, spec.format) as reader:
        mapper = compile_mapping(spec, reader.header, file=reader.file)
        claims = [m.claim for m in (mapper.map_row(src, "demo") for src in reader) if m.claim is not None]
    return claims


def measure(n: int, repeat: int) -> dict[str, float]:
    """Microseconds of CPU per claim, best of ``repeat``: each way of running the checks this checkout has."""
    from gateway.domain import rules
    from gateway.domain.limitation import STATUTORY, limitation_findings
    from gateway.domain.limits import size_findings

    claims = _claims(n)
    # The same claims with a warning each (a consumer without a birth date), and with a part payment each.
    flagged = [msgspec.structs.replace(c, debtor=msgspec.structs.replace(c.debtor, birth_date=None))
               for c in claims]
    paid = [msgspec.structs.replace(c, payments_received=[Payment(amount=Decimal("1.00"), date=date(2025, 4, 1))])
            for c in claims]
    validate = rules.validate_claim
    ways: dict[str, Callable[[], object]] = {
        "validate_claim + limitation_findings": lambda: [
            (validate(c, TODAY), limitation_findings(c, TODAY, STATUTORY)) for c in claims],
        "  of which size_findings": lambda: [size_findings(c) for c in claims],
        "the same, each with a warning": lambda: [
            (validate(c, TODAY), limitation_findings(c, TODAY, STATUTORY)) for c in flagged],
        "the same, each with a part payment": lambda: [
            (validate(c, TODAY), limitation_findings(c, TODAY, STATUTORY)) for c in paid],
    }
    check = getattr(rules, "check_claim", None)  # the one-call entry point, where this checkout has it
    if check is not None:
        ways["check_claim (one call)"] = lambda: [check(c, TODAY, STATUTORY) for c in claims]
    found = sum(len(validate(c, TODAY)) + len(limitation_findings(c, TODAY, STATUTORY))
                for c in claims)
    out = {"claims": float(len(claims)), "findings": float(found)}
    for name, run in ways.items():
        best = float("inf")
        for _ in range(repeat):
            start = time.process_time()
            run()
            best = min(best, time.process_time() - start)
        out[name] = best / len(claims) * 1e6
    return out


def _child(tree: str, n: int, repeat: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": tree}
    code = (f"import runpy, sys; sys.path.insert(0, {tree!r}); import gateway;"
            f"assert gateway.__file__.startswith({tree!r}), gateway.__file__;"
            f"print(repr(runpy.run_path({__file__!r}, run_name='child')['measure']({n}, {repeat})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True,
                            check=True)
    return eval(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", help="another checkout to compare with, interleaved")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1])
    print(f"{date.today()} load average {os.getloadavg()[0]:.2f}, {args.rows} demo rows, best of {args.repeat}, "
          "CPU us/claim")
    if not args.before:
        for name, value in measure(args.rows, args.repeat).items():
            print(f"{name:40s} {value:10.2f}")
        return
    runs: list[tuple[str, dict[str, float]]] = []
    for label, tree in (("before", args.before), ("after", here), ("after", here), ("before", args.before)):
        runs.append((label, _child(tree, args.rows, args.repeat)))
        print(f"{label:6s} " + "  ".join(f"{k.strip()}={v:.2f}" for k, v in runs[-1][1].items()), flush=True)
    def best(key: str, label: str) -> float:
        return min(r[key] for lb, r in runs if lb == label)

    plain = best("validate_claim + limitation_findings", "before")
    for key in ("validate_claim + limitation_findings", "the same, each with a warning",
                "the same, each with a part payment"):
        print(f"{key}: before {best(key, 'before'):.2f}, after {best(key, 'after'):.2f} us/claim "
              f"({best(key, 'before') / best(key, 'after'):.2f}x)")
    if any("check_claim (one call)" in r for _, r in runs):
        one = best("check_claim (one call)", "after")
        print(f"check_claim: after {one:.2f} us/claim ({plain / one:.2f}x against the two calls before)")
    print(f"load average after the run {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
