"""``gateway status [--json]``: the gateway on one screen, as the database knows it."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.bootstrap import App
from gateway.entrypoints.output import cell, print_json, print_table
from gateway.services.status_report import gateway_status


def add_parser(sub: Any) -> None:
    """Register ``status`` on the top-level subparsers."""
    q = sub.add_parser("status", help="backlog, dead letters, partner syncs, last files, leases")
    q.add_argument("--json", action="store_true")


def run(app: App, args: argparse.Namespace) -> int:
    """Print the status; exit 0 (a report, not a check: see docs/operations.md for alerts)."""
    doc = gateway_status(app)
    if args.json:
        print_json(doc)
        return 0
    ob = doc["outbox"]
    age = ob["oldest_pending_seconds"]
    print(f"gateway status at {cell(doc['at'])} ({doc['database']})")
    print(f"outbox: {ob['pending']} pending, {ob['leased']} leased, {ob['dead']} dead"
          + (f"; oldest waiting {_duration(age)}" if age is not None else ""))
    print("\npartners")
    print_table(doc["partners"], ("partner", "pending", "leased", "dead", "next_try_at", "held_until", "last_sync_at",
                                  "updates", "last_error"))
    print("\nclients (last file)")
    print_table(doc["clients"], ("client", "last_file", "submission", "channel", "status", "rows", "received_at"))
    print("\nprocessing")
    print_table(doc["processing"], ("reference", "client_id", "filename", "rows_done", "received_at"))
    print("\nleases")
    print_table(doc["leases"], ("name", "owner", "expires_at", "expired"))
    return 0


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
