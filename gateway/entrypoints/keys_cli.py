"""``gateway keys rotate|retire|destroy-client``, ``gateway claims erase`` and ``gateway retention run``.

The key lifecycle and erasure of personal data (``docs/security.md`` "Keys, rotation and erasure").
Exit 0 when done, 1 with a one-line reason when refused (a key still in use, no ``--yes``), 4 when no
claim matches an erasure request.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.bootstrap import App
from gateway.entrypoints.output import print_json
from gateway.entrypoints.progress import RowProgress
from gateway.errors import GatewayError
from gateway.services import erasure, key_rotation

ACTIONS = {("keys", "rotate"), ("keys", "retire"), ("keys", "destroy-client"), ("claims", "erase"),
           ("retention", "run")}


def add_parsers(sub: Any, keys: Any, claims: Any) -> None:
    """Register the key, erasure and retention commands on the top-level, ``keys`` and ``claims`` parsers."""
    r = keys.add_parser("rotate", help="a new master key (default) or a new key for one client")
    which = r.add_mutually_exclusive_group()
    which.add_argument("--master", action="store_true", help="new master key; client keys re-wrapped (default)")
    which.add_argument("--client", metavar="ID", help="new key for this client; its claim keys re-wrapped")
    which.add_argument("--index", action="store_true",
                       help="new blind-index key; every claim's name index and fingerprint rebuilt")
    r.add_argument("--json", action="store_true")
    t = keys.add_parser("retire", help="remove an old master key once nothing is encrypted under it")
    t.add_argument("key_id")
    d = keys.add_parser("destroy-client", help="destroy a client's keys: all its personal data unreadable")
    d.add_argument("client_id")
    d.add_argument("--yes", action="store_true", help="required: this cannot be undone")
    e = claims.add_parser("erase", help="erase the personal data of a claim or of a debtor at a client")
    e.add_argument("claim_id", nargs="?", type=int)
    e.add_argument("--client", help="with --reference or --debtor-name")
    e.add_argument("--reference")
    e.add_argument("--debtor-name", help="as stored (case and spaces do not matter)")
    e.add_argument("--reason", required=True, help="kept in the claim's history; no debtor data")
    e.add_argument("--json", action="store_true")
    ret = sub.add_parser("retention", help="per-client retention").add_subparsers(dest="action", required=True)
    ret.add_parser("run", help="erase closed claims, raw files and credit checks past each client's retention")


def run(app: App, args: argparse.Namespace) -> int:
    """Run one of ``ACTIONS``."""
    if args.command == "claims":
        ids = erasure.find(app, claim_id=args.claim_id, client_id=args.client, reference=args.reference,
                           debtor_name=args.debtor_name)
        done = erasure.erase(app, ids, args.reason)
        if args.json:
            print_json({"erased": done.erased, "already_erased": done.already, "credit_checks": done.credit_checks})
        else:
            print(f"erased {len(done.erased)} claim(s): {', '.join(map(str, done.erased)) or '-'}"
                  + (f"; already erased: {', '.join(map(str, done.already))}" if done.already else "")
                  + (f"; {done.credit_checks} credit check(s) of the debtor" if done.credit_checks else ""))
        return 0
    if args.command == "retention":
        kept = erasure.run_retention(app)
        for client in sorted(set(kept.claims) | set(kept.payloads) | set(kept.credit_checks)):
            print(f"{client}: {kept.claims.get(client, 0)} claim(s) erased, "
                  f"{kept.payloads.get(client, 0)} raw file(s) deleted"
                  + (f", {kept.credit_checks[client]} credit check(s) erased" if client in kept.credit_checks else ""))
        for partner, n in sorted(kept.agency_files.items()):
            print(f"{partner}: {n} file(s) of the simulated sandbox agency deleted")
        if not kept.claims and not kept.payloads and not kept.credit_checks and not kept.agency_files:
            print("nothing past retention")
        return 0
    if args.action == "destroy-client":
        if not args.yes:
            raise GatewayError("destroying a client's keys cannot be undone: add --yes")
        counts = key_rotation.destroy_client(app, args.client_id)
        print(f"client {args.client_id}: " + ", ".join(f"{n} {k}" for k, n in counts.items())
              + " destroyed; its personal data can no longer be read")
        return 0
    bars: dict[str, RowProgress] = {}

    def progress(what: str, rows: int) -> None:
        bars.setdefault(what, RowProgress(what))(rows)

    if args.action == "retire":
        rep = key_rotation.retire(app, args.key_id, progress)
        print(f"retired master key {args.key_id} (active: {rep.key_id}; moved meanwhile: {_moved(rep)})")
        return 0
    if getattr(args, "index", False):
        rep = key_rotation.rotate_index(app, progress)
        line = f"new blind-index key; name index and fingerprint of {rep.rewrapped} claim(s) rebuilt"
    elif args.client:
        rep = key_rotation.rotate_client(app, args.client, progress)
        line = f"client {args.client}: new key {rep.key_id}, {rep.rewrapped} claim key(s) re-wrapped"
    else:
        rep = key_rotation.rotate_master(app, progress)
        line = (f"new master key {rep.key_id} active; {rep.rewrapped} client key(s) re-wrapped; "
                f"re-encrypted {_moved(rep)}")
    for bar in bars.values():
        bar.finish()
    if args.json:
        print_json({"key_id": rep.key_id, "rewrapped": rep.rewrapped, "reencrypted": rep.reencrypted})
    else:
        print(line)
    return 0


def _moved(rep: key_rotation.RotationReport) -> str:
    return ", ".join(f"{n} {k}" for k, n in rep.reencrypted.items()) or "nothing"

