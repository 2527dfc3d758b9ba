"""``gateway claims release|cancel|export``: the operator's bulk actions and exports on claims.

Release and cancel take claim ids, ``--submission REF``, or ``--client ID --status S``; each claim goes
through the client's own use cases (``services.claim_admin``). Exit 0 when every selected claim was
done, 5 when some could not be (each is listed with why), 4 for an unknown claim or submission.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gateway.bootstrap import App
from gateway.entrypoints.output import print_json, print_table
from gateway.services import claim_admin
from gateway.services.claim_admin import BulkResult, SelectionError
from gateway.services.claim_export import ExportFilter, submission_id, write_csv, write_xlsx

EXIT_PARTIAL = 5


def add_actions(cl: Any, date_type: Any) -> None:
    """Register the actions on the ``claims`` subparsers."""
    for name, text in (("release", "hand held claims over now (a collection run)"),
                       ("cancel", "cancel claims (at once before handover, else asked of the partner)")):
        q = cl.add_parser(name, help=text)
        q.add_argument("claim_ids", nargs="*", type=int, metavar="ID")
        q.add_argument("--submission", help="every held (release) or open (cancel) claim of this submission")
        q.add_argument("--client", help="with --status: every claim of this client in that state")
        q.add_argument("--status", help="state(s), comma-separated (with --client)")
        q.add_argument("--reason", help="told to the partner; no debtor data" if name == "cancel" else
                       "recorded in each released claim's history; a time-barred claim needs one (no debtor data)")
        q.add_argument("--json", action="store_true")
    q = cl.add_parser("export", help="claims as CSV or XLSX (formula-safe)")
    q.add_argument("--client")
    q.add_argument("--status", help="state(s), comma-separated")
    q.add_argument("--submission", help="submission reference")
    q.add_argument("--sandbox", action="store_true",
                   help="without --client: every client's sandbox instead of production (docs/sandbox.md)")
    q.add_argument("--since", type=date_type, help="received on or after (YYYY-MM-DD)")
    q.add_argument("--until", type=date_type, help="received before (YYYY-MM-DD)")
    q.add_argument("--format", choices=("csv", "xlsx"), help="default: from --output's suffix, else csv")
    q.add_argument("--output", "-o", type=Path, help="file to write (CSV default: standard output)")
    q.add_argument("--with-personal-data", action="store_true",
                   help="decrypt and include debtor name, birth date, address, e-mail, IBAN")


def run(app: App, args: argparse.Namespace) -> int:
    """Dispatch ``gateway claims release|cancel|export``."""
    if args.action == "export":
        return _export(app, args)
    try:
        selection = claim_admin.select_claims(app, ids=args.claim_ids, submission=args.submission,
                                              client=args.client, status=args.status)
    except SelectionError as exc:
        print(f"gateway claims {args.action}: {exc}", file=sys.stderr)
        return 2
    if args.action == "release":
        result = claim_admin.release(app, selection, submission=args.submission, reason=args.reason)
    else:
        result = claim_admin.cancel(app, selection, args.reason)
    return _report(args, result)


def _report(args: argparse.Namespace, r: BulkResult) -> int:
    if args.json:
        print_json({"done": [{"claim_id": c, "result": s} for c, s in r.done],
                    "skipped": [{"claim_id": c, "reason": why} for c, why in r.skipped]})
    else:
        verb = "released" if args.action == "release" else "cancelled"
        print(f"{len(r.done)} claim(s) {verb}, {len(r.skipped)} skipped")
        print_table([{"claim_id": c, "result": s} for c, s in r.done] +
                    [{"claim_id": c, "result": f"skipped: {why}"} for c, why in r.skipped],
                    ("claim_id", "result"), empty="(no claims selected)")
    return EXIT_PARTIAL if r.skipped else 0


def _export(app: App, args: argparse.Namespace) -> int:
    fmt = args.format or ("xlsx" if args.output and args.output.suffix.lower() == ".xlsx" else "csv")
    if fmt == "xlsx" and args.output is None:
        print("gateway claims export: XLSX needs --output FILE", file=sys.stderr)
        return 2
    f = ExportFilter(client_id=args.client, state=args.status, since=args.since, until=args.until,
                     submission_id=submission_id(app, args.submission) if args.submission else None,
                     sandbox=args.sandbox)
    personal = bool(args.with_personal_data)
    what = "WITH personal data (decrypted): handle it under your data protection rules" if personal \
        else "without personal data"
    if fmt == "xlsx":
        about = [("export", "claims"), ("created", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
                 ("filter", _filter_text(args)), ("personal data", "included (decrypted)" if personal else "not included")]
        n = write_xlsx(app, f, personal, args.output, about)
    elif args.output is not None:
        with open(args.output, "w", encoding="utf-8", newline="") as fh:
            n = write_csv(app, f, personal, fh)
    else:
        n = write_csv(app, f, personal, sys.stdout)
    print(f"{n} claim(s) exported as {fmt} to {args.output or 'standard output'}, {what}", file=sys.stderr)
    return 0


def _filter_text(args: argparse.Namespace) -> str:
    parts = [f"{k}={getattr(args, k)}" for k in ("client", "status", "submission", "since", "until")
             if getattr(args, k)]
    return ", ".join(parts) or "all claims"
