"""``gateway mapping check|preview|suggest``: the integrator's tools for writing a client mapping.

None of them touches the database or keys, and the client need not be configured (``--client`` names
the mapping); the work is done by ``services.onboarding``, which the web console can call too. ``check``
loads and validates a mapping, ``preview`` maps and validates a real file and shows claims and findings,
``suggest`` drafts a mapping for an unseen file; ``ingest_dry_run`` serves ``ingest --dry-run`` for a
client not configured yet.
Exit codes as for every command: 0 done, 1 the mapping (or config) is wrong, 3 the file is unusable.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import msgspec

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError, GatewayError, InputError
from gateway.services import onboarding
from gateway.services.preview import Preview

EXIT_ERROR, EXIT_INPUT = 1, 3


def add_parser(sub: Any) -> None:
    """Register ``mapping`` and its actions on the top-level subparsers."""
    mp = sub.add_parser("mapping", help="check, preview and draft client mappings").add_subparsers(
        dest="action", required=True)
    chk = mp.add_parser("check", help="validate a mapping file (the client's installed one or --file)")
    which = chk.add_mutually_exclusive_group(required=True)
    which.add_argument("--client", help="check the client's mapping (mappings/<client>.yaml; configured or not)")
    which.add_argument("--file", type=Path, help="check this mapping file")
    chk.add_argument("--json", action="store_true")
    pre = mp.add_parser("preview", help="map and validate FILE; show claims and every error (nothing stored)")
    pre.add_argument("file", type=Path)
    pre.add_argument("--client", required=True, help="names the mapping (mappings/<client>.yaml); "
                     "the client need not be configured yet")
    pre.add_argument("--mapping", type=Path, help="use this mapping file instead of the installed one")
    pre.add_argument("--limit", type=int, default=50, help="rows to show in full (default 50; counts cover all)")
    pre.add_argument("--json", action="store_true", help="canonical claims and findings as JSON")
    sug = mp.add_parser("suggest", help="print a YAML mapping draft for FILE to standard output")
    sug.add_argument("file", type=Path)
    sug.add_argument("--client", default=None, help="client id to write into the draft")
    sug.add_argument("--type", dest="format_type", default=None,
                     help="file type if the extension does not say it (csv, xlsx, xls, ods, xml, fixed_width)")
    sug.add_argument("--json", action="store_true", help="the draft and, per field, its column, why and "
                     "whether it is unsure, as JSON")
    sug.add_argument("--layout", type=Path, default=None,
                     help="fixed width: the client's record description (field, start, length; text, CSV or XLSX)")


def run(args: argparse.Namespace) -> int:
    """Dispatch ``gateway mapping <action>``."""
    handler = {"check": _check, "preview": _preview, "suggest": _suggest}[args.action]
    return handler(args)


def _config(args: argparse.Namespace) -> GatewayConfig:
    return load_config(getattr(args, "config", None))


def _fail(args: argparse.Namespace, exc: GatewayError) -> int:
    """One line on stderr; with ``--json`` also a JSON error document on stdout, so scripts always get JSON."""
    kind = "input" if isinstance(exc, InputError) else "config"
    print(f"{'error' if kind == 'input' else 'config error'}: {exc}", file=sys.stderr)
    if getattr(args, "json", False):
        doc: dict[str, Any] = {"ok": False, "error": {"kind": kind, "message": str(exc)}}
        if isinstance(exc, ConfigError):
            doc["error"].update({"file": exc.file, "line": exc.line, "key": exc.key})
        print(msgspec.json.encode(doc).decode())
    return EXIT_INPUT if kind == "input" else EXIT_ERROR


def _check(args: argparse.Namespace) -> int:
    try:
        path = args.file if args.file is not None else onboarding.mapping_path(_config(args), args.client)
    except GatewayError as exc:
        return _fail(args, exc)
    result = onboarding.check_mapping(path)
    if not result.ok:
        print(f"config error: {result.error}", file=sys.stderr)
        if args.json:
            print(msgspec.json.encode({"file": str(path), "ok": False, "error": {
                "kind": "config", "message": result.error, "file": str(path), "line": result.line,
                "key": result.key}}).decode())
        return EXIT_ERROR
    if args.json:
        print(msgspec.json.encode({"file": str(path), "ok": True, "mapping": result.spec}).decode())
    else:
        extra = f", grouped by {result.group}" if result.group else ""
        print(f"ok: {path}: client {result.client}, {result.format}, {result.fields} fields{extra}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    try:
        result = onboarding.preview_for_client(_config(args), args.file, args.client, mapping=args.mapping,
                                               limit=max(0, args.limit))
    except GatewayError as exc:
        return _fail(args, exc)
    if args.json:
        print(msgspec.json.encode(onboarding.preview_document(result)).decode())
    else:
        _print_preview(result)
    return 0


def _print_preview(p: Preview) -> None:
    rows = [(str(r.row) + (f" {r.xpath}" if r.xpath else f" ({r.sheet})" if r.sheet else ""), r.outcome,
             r.reference or "", _debtor(r.claim), _amount(r.claim)) for r in p.rows]
    head = ("ROW", "OUTCOME", "REFERENCE", "DEBTOR", "OPEN AMOUNT")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r, line in zip(p.rows, rows):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        for f in r.findings:
            where = ", ".join(x for x in (f"row {f.row}" if f.row else "", f"column '{f.column}'" if f.column else "",
                                          f"field {f.field}" if f.field else "") if x)
            print(f"    {f.severity.value} {f.code}: {f.message}" + (f"  [{where}]" if where else ""))
    more = f" (showing the first {len(p.rows)})" if p.truncated else ""
    total = sum(p.counts.values())
    print(f"{total} claims from {p.file}{more}: " + ", ".join(f"{n} {k}" for k, n in p.counts.items()))


def _debtor(claim: Any) -> str:
    return claim.debtor.display_name() if claim is not None else ""


def _amount(claim: Any) -> str:
    return f"{claim.total_open_amount} {claim.currency}" if claim is not None else ""


def _suggest(args: argparse.Namespace) -> int:
    # the config's limits when there is one: suggest also runs before any config exists
    try:
        limits = _config(args).limits if getattr(args, "config", None) else None
        draft = onboarding.suggest_for_file(args.file, client=args.client or _client_id(args.file),
                                            format_type=args.format_type, layout=args.layout, limits=limits)
    except GatewayError as exc:
        return _fail(args, exc)
    if args.json:
        print(msgspec.json.encode(dataclasses.asdict(draft)).decode())
    else:
        sys.stdout.write(draft.text)
    return 0


def _client_id(path: Path) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in path.stem).strip("-_")
    return stem or "new-client"


def ingest_dry_run(args: argparse.Namespace) -> int | None:
    """``gateway ingest FILE --client ID --dry-run`` for a client not configured yet (no keys, no database
    needed: the mapping preview, reported as a dry run); None for a configured client (the normal path)."""
    try:
        cfg = _config(args)
    except GatewayError:
        return None  # the normal path reports a broken config
    if args.client in cfg.clients:
        return None
    try:
        result = onboarding.dry_run_unconfigured(cfg, args.file, args.client, mapping=args.mapping)
    except GatewayError as exc:
        return _fail(args, exc)
    from gateway.entrypoints.commands import _print_result, _result_doc
    from gateway.entrypoints.output import print_json
    print(f"{args.file.name}: client {args.client} is not configured yet: mapped and validated without "
          "database (no stored claims to compare with, no partner routing)", file=sys.stderr)
    if args.json:
        print_json(_result_doc(result))
    else:
        _print_result(result)
    return 0
