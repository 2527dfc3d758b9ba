"""``gateway partners list|show|test``: configured partners and a connectivity check (no database needed).

``test`` builds the partner's adapter from its options and proves it can reach the partner (folder
writable, SFTP login and listing, HTTP or WSDL answering, SMTP greeting) and that its certificate is
readable and not expired. One line per partner; exit 0 when all pass, 1 when one fails.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from gateway.bootstrap import App
from gateway.entrypoints.output import print_fields, print_json, print_table
from gateway.errors import NotFound

ACTIONS = ("list", "show", "test")
# option names whose values are secrets or point at them: never printed
_HIDDEN = ("password", "secret", "token", "key")


def add_actions(pa: Any) -> None:
    """Register list, show and test on the ``partners`` subparsers."""
    q = pa.add_parser("list", help="configured partners")
    q.add_argument("--json", action="store_true")
    q = pa.add_parser("show", help="one partner's settings")
    q.add_argument("partner")
    q.add_argument("--json", action="store_true")
    q = pa.add_parser("test", help="connectivity check through the partner's adapter")
    q.add_argument("partner", nargs="?", help="default: every partner")
    q.add_argument("--json", action="store_true")


def _doc(app: App, pid: str) -> dict[str, Any]:
    p = app.config.partners[pid]
    options = {k: ("(hidden)" if any(h in k.lower() for h in _HIDDEN) and not k.endswith("_env") else v)
               for k, v in p.options.items()}
    return {"partner": pid, "adapter": p.adapter, "certificate": p.certificate, "options": options,
            "sync_enabled": p.sync.enabled, "sync_every_seconds": p.sync.every_seconds,
            "webhook": p.webhook.listen, "max_attempts": p.max_attempts, "status_codes": len(p.status_map),
            "simulator": p.simulator.enabled}


def run(app: App, args: argparse.Namespace) -> int:
    """Dispatch ``gateway partners list|show|test``."""
    if args.action == "list":
        docs = [_doc(app, pid) for pid in sorted(app.config.partners)]
        if args.json:
            print_json(docs)
        else:
            print_table(docs, ("partner", "adapter", "sync_enabled", "sync_every_seconds", "webhook", "simulator"))
        return 0
    if args.action == "show":
        if args.partner not in app.config.partners:
            raise NotFound(f"no partner '{args.partner}' (configured: {', '.join(sorted(app.config.partners))})")
        doc = _doc(app, args.partner)
        if args.json:
            print_json(doc)
        else:
            print_fields(doc.items())
        return 0
    from gateway.services.partner_check import check_partner  # imports every adapter's transport: only here
    ids = [args.partner] if args.partner else sorted(app.config.partners)
    results = [check_partner(app, pid) for pid in ids]
    if args.json:
        print_json([asdict(r) for r in results])
    else:
        for r in results:
            print(f"{'ok  ' if r.ok else 'FAIL'} {r.partner} ({r.adapter}, {r.seconds:.2f} s): {r.detail}; "
                  f"{r.certificate}")
    return 0 if all(r.ok for r in results) else 1
