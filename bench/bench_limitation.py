"""The limitation rule's cost per claim against ``validate_claim`` measured in the same run.

``.venv/bin/python -m bench.bench_limitation [--n N]``: each check runs N times on one claim, best of five
repeats; the figure that matters is the ratio to ``validate_claim``, which every row already pays on the ingest
path. Three claims: the common one (due date, nothing else: the quick path), one with a part payment and an
acknowledgement (the full computation, no finding), and a time-barred one (full computation and its message).
"""

from __future__ import annotations

import argparse
import os
import timeit
from datetime import date
from decimal import Decimal

import msgspec

from gateway.domain.limitation import STATUTORY, limitation_findings
from gateway.domain.model import Payment
from gateway.domain.rules import validate_claim
from tests.factories import make_claim

TODAY = date(2026, 11, 30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50_000)
    n = parser.parse_args().n
    plain = make_claim()
    restarted = msgspec.structs.replace(plain, payments_received=[Payment(amount=Decimal("1"), date=date(2025, 6, 1))],
                                        acknowledgement_date=date(2025, 7, 1))
    barred = make_claim(due_date=date(2021, 3, 1), invoice_date=date(2021, 2, 15))

    def best(fn: object) -> float:
        return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6  # type: ignore[arg-type]

    reference = best(lambda: validate_claim(plain, TODAY))
    print(f"load average {os.getloadavg()[0]:.1f}; validate_claim {reference:.2f} us/claim (reference)")
    for name, claim in (("common claim (quick path)", plain), ("part payment + acknowledgement", restarted),
                        ("time-barred (finding and message)", barred)):
        us = best(lambda c=claim: limitation_findings(c, TODAY, STATUTORY))
        print(f"{name}: {us:.2f} us/claim, {us / reference:.1%} of validate_claim")


if __name__ == "__main__":
    main()
