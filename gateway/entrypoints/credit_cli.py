"""``gateway credit check|audit|erase``: a credit check from the command line, a client's audit log export,
and erasure of checks' personal data.

``check`` needs the client, the stated legitimate interest and the user who asks (recorded with the check);
exit 0 with the colour printed (also for red: the check worked), 2 when the check is refused (interest,
subject fields, rate limit, not enabled). ``audit`` writes the client's log as CSV (default) or JSON lines,
to stdout or ``--output``; it holds the subjects' names, so it is the client's data, like a claims export.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from gateway.bootstrap import App
from gateway.domain.credit import INTERESTS, Subject, SubjectKind
from gateway.entrypoints.output import print_fields, print_json, print_table
from gateway.services import credit
from gateway.services.ack import safe_cell

EXIT_REFUSED = 2


def add_parser(sub: Any, when: Callable[[str], datetime]) -> None:
    """Register ``credit`` and its actions on the top-level subparsers."""
    cr = sub.add_parser("credit", help="credit checks across bureaus (docs/credit.md)")
    acts = cr.add_subparsers(dest="action", required=True)
    q = acts.add_parser("check", help="check a person or company with the client's bureaus")
    q.add_argument("--client", required=True)
    q.add_argument("--interest", required=True, choices=INTERESTS, help="the stated legitimate interest")
    q.add_argument("--user", required=True, help="who asks (recorded in the audit log)")
    q.add_argument("--business", action="store_true", help="a company (needs --company) instead of a consumer")
    for name in ("first-name", "last-name", "company", "street", "house-number", "postal-code", "city"):
        q.add_argument(f"--{name}")
    q.add_argument("--birth-date", type=date.fromisoformat, help="YYYY-MM-DD")
    q.add_argument("--country", default="DE")
    q.add_argument("--json", action="store_true")
    q = acts.add_parser("audit", help="export a client's credit check audit log")
    q.add_argument("--client", required=True)
    q.add_argument("--since", type=when, help="on or after this date (YYYY-MM-DD)")
    q.add_argument("--until", type=when, help="before this date (YYYY-MM-DD)")
    q.add_argument("--format", choices=("csv", "json"), default="csv")
    q.add_argument("--output", type=Path, help="write to this file instead of stdout")
    q = acts.add_parser("erase", help="erase the subject and answers of checks (the audit rows stay)")
    q.add_argument("--client", required=True)
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("--check", type=int, help="one check by its id")
    which.add_argument("--name", help="every check of this subject name (as written, case and spaces ignored)")


def run(app: App, args: argparse.Namespace) -> int:
    """Dispatch ``gateway credit <action>``."""
    if args.action == "erase":
        n = credit.erase_checks(app, args.client, check_id=args.check, subject_name=args.name)
        print(f"{n} checks erased (their audit rows stay)")
        return 0
    return check(app, args) if args.action == "check" else audit(app, args)


def check(app: App, args: argparse.Namespace) -> int:
    subject = Subject(kind=SubjectKind.BUSINESS if args.business else SubjectKind.CONSUMER,
                      first_name=args.first_name, last_name=args.last_name, company=args.company,
                      birth_date=args.birth_date, street=args.street, house_number=args.house_number,
                      postal_code=args.postal_code, city=args.city, country=args.country)
    try:
        answer = credit.check_credit(app, args.client, subject, interest=args.interest, user=args.user,
                                     channel="cli")
    except credit.CreditRefused as exc:
        print(f"refused ({exc.code}): {exc}", file=sys.stderr)
        return EXIT_REFUSED
    bureaus = [{"bureau": v.bureau, "status": v.status, "colour": v.colour or "",
                "reasons": ", ".join(f"{r.code} {r.detail}".strip() for r in v.reasons)}
               for v in (answer.verdict.bureaus if answer.verdict else [])]
    if args.json:
        print_json({"check_id": answer.check_id, "colour": answer.colour, "incomplete": answer.incomplete,
                    "cached": answer.cached, "source_check_id": answer.source_check_id,
                    "checked_at": answer.checked_at.isoformat(), "bureaus": bureaus,
                    "results": {o.bureau: o.result for o in answer.outcomes}})
        return 0
    print_fields([("check", answer.check_id), ("colour", answer.colour.upper()),
                  ("incomplete", "yes: some bureaus did not answer" if answer.incomplete else "no"),
                  ("cached", f"yes: the answer of check {answer.source_check_id}" if answer.cached else "no"),
                  ("checked at", answer.checked_at)])
    print()
    print_table(bureaus, ("bureau", "status", "colour", "reasons"))
    return 0


def _write(rows: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    w = csv.writer(out)
    w.writerow(credit.AUDIT_COLUMNS)
    for r in rows:
        bureaus = " ".join(f"{b['bureau']}:{b['status']}" for b in r["bureaus"] or [])
        w.writerow([safe_cell(bureaus if c == "bureaus" else "" if r[c] is None else str(r[c]))
                    for c in credit.AUDIT_COLUMNS])


def audit(app: App, args: argparse.Namespace) -> int:
    rows = credit.audit_log(app, args.client, args.since, args.until)
    if args.output is None:
        _write(rows, args.format, sys.stdout)
    else:
        with args.output.open("w", encoding="utf-8", newline="") as f:
            _write(rows, args.format, f)
        print(f"{len(rows)} entries written to {args.output}")
    return 0
