"""``gateway partners sync [--partner ID] [--json]``: pull partner updates now, outside the schedule."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.bootstrap import App
from gateway.entrypoints.output import print_json, print_table
from gateway.errors import DeliveryError
from gateway.services.partner_sync import sync_partner


def add_parser(sub: Any) -> Any:
    """Register ``partners sync`` on the top-level subparsers; returns the ``partners`` subparsers."""
    pa = sub.add_parser("partners", help="collection partners").add_subparsers(dest="action", required=True)
    q = pa.add_parser("sync", help="pull status updates from partners now")
    q.add_argument("--partner", help="one partner id (default: every partner that offers status back)")
    q.add_argument("--json", action="store_true")
    return pa


def run(app: App, args: argparse.Namespace) -> int:
    """Sync one or every partner; exit 1 if a partner could not be reached."""
    ids = [args.partner] if args.partner else sorted(app.config.partners)
    rows: list[dict[str, Any]] = []
    failed = False
    for pid in ids:
        try:
            counts = sync_partner(app, pid).counts
            rows.append({"partner": pid, "ok": True, **counts})
        except DeliveryError as exc:
            failed = failed or exc.retryable or bool(args.partner)
            rows.append({"partner": pid, "ok": False, "error": str(exc)})
    if args.json:
        print_json(rows)
    else:
        # every outcome of partner_updates.ApplyResult: an update set aside must show, not only in --json
        cols = ["partner", "ok", "applied", "recorded", "duplicate", "unknown_code", "unknown_claim", "not_sent",
                "unknown_instruction", "illegal", "stale", "invalid_amount", "invalid_update", "error"]
        print_table([{c: r.get(c, "") for c in cols} for r in rows], cols)
    return 1 if failed else 0
