"""``gateway mapping check|preview|suggest``: the integrator's tools for writing a client mapping.

None of them touches the database: ``check`` loads and validates a mapping, ``preview`` maps and
validates a real file and shows claims and findings, ``suggest`` drafts a mapping for an unseen file.
Exit codes as for every command: 0 done, 1 the mapping (or config) is wrong, 3 the file is unusable.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

import msgspec

from gateway.config import GatewayConfig, load_config
from gateway.mapping.spec import MappingSpec, load_mapping
from gateway.mapping.sample import read_sample
from gateway.mapping.suggest import suggest_mapping
from gateway.services.preview import Preview, preview_file


def add_parser(sub: Any) -> None:
    """Register ``mapping`` and its actions on the top-level subparsers."""
    mp = sub.add_parser("mapping", help="check, preview and draft client mappings").add_subparsers(
        dest="action", required=True)
    chk = mp.add_parser("check", help="validate a mapping file (the client's installed one or --file)")
    which = chk.add_mutually_exclusive_group(required=True)
    which.add_argument("--client", help="check mappings/<client>.yaml as the config names it")
    which.add_argument("--file", type=Path, help="check this mapping file")
    chk.add_argument("--json", action="store_true")
    pre = mp.add_parser("preview", help="map and validate FILE; show claims and every error (nothing stored)")
    pre.add_argument("file", type=Path)
    pre.add_argument("--client", required=True)
    pre.add_argument("--mapping", type=Path, help="use this mapping file instead of the installed one")
    pre.add_argument("--limit", type=int, default=50, help="rows to show in full (default 50; counts cover all)")
    pre.add_argument("--json", action="store_true", help="canonical claims and findings as JSON")
    sug = mp.add_parser("suggest", help="print a YAML mapping draft for FILE to standard output")
    sug.add_argument("file", type=Path)
    sug.add_argument("--client", default=None, help="client id to write into the draft")
    sug.add_argument("--type", dest="format_type", default=None,
                     help="file type if the extension does not say it (csv, xlsx, xls, ods, xml, fixed_width)")
    sug.add_argument("--layout", type=Path, default=None,
                     help="fixed width: the client's record description (field, start, length; text, CSV or XLSX)")


def run(args: argparse.Namespace) -> int:
    """Dispatch ``gateway mapping <action>``."""
    handler = {"check": _check, "preview": _preview, "suggest": _suggest}[args.action]
    return handler(args)


def _config(args: argparse.Namespace) -> GatewayConfig:
    return load_config(getattr(args, "config", None))


def _check(args: argparse.Namespace) -> int:
    path = args.file if args.file is not None else _config(args).mapping_file(args.client)
    spec = load_mapping(path)  # ConfigError: file, line, key and what was expected
    if args.json:
        print(msgspec.json.encode({"file": str(path), "ok": True, "mapping": spec}).decode())
    else:
        extra = f", grouped by {'+'.join(spec.group.columns)} ({spec.group.mode})" if spec.group else ""
        print(f"ok: {path}: client {spec.client}, {spec.format.type}, {len(spec.fields)} fields{extra}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    cfg = _config(args)
    client = cfg.client(args.client)
    spec: MappingSpec = load_mapping(args.mapping or cfg.mapping_file(args.client))
    result = preview_file(args.file, spec, args.client, today=date.today(), limit=max(0, args.limit),
                          hold_all=client.hold_all, limits=cfg.limits, limitation=client.limitation)
    if args.json:
        print(msgspec.json.encode(result).decode())
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
    limits = _config(args).limits if getattr(args, "config", None) else None
    sample = read_sample(args.file, args.format_type, limits, layout=args.layout)
    client = args.client or _client_id(args.file)
    sys.stdout.write(suggest_mapping(sample, client=client))
    return 0


def _client_id(path: Path) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in path.stem).strip("-_")
    return stem or "new-client"
