"""The integrator's loop as use cases: check, suggest and preview a mapping, and install it for a client.

None of them needs a database or keys, and none needs the client to be configured yet: ``--client`` only
names the mapping (``mappings/<client>.yaml``, or the file the config names for a configured client).
Each returns a structured result (the CLI prints it, the web console renders it); a problem the
integrator must fix is data in the result (``CheckResult.error``) or a ``ConfigError``/``InputError``
that names file, line and key.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.config import GatewayConfig, LimitsConfig
from gateway.domain.limitation import STATUTORY
from gateway.errors import ConfigError
from gateway.mapping.sample import read_sample
from gateway.mapping.spec import MappingSpec, load_mapping, parse_mapping
from gateway.mapping.suggest import Suggestion, suggest
from gateway.services.preview import Preview, preview_file

if TYPE_CHECKING:
    from gateway.services.ingest_run import IngestResult


def mapping_path(cfg: GatewayConfig, client_id: str) -> Path:
    """The mapping file of ``client_id``: the configured one, else ``<mappings>/<client_id>.yaml``."""
    if client_id in cfg.clients:
        return cfg.mapping_file(client_id)
    return cfg.mappings_dir / f"{client_id}.yaml"


@dataclass
class CheckResult:
    """Whether a mapping file loads; what it is, or the first error with its line and key."""

    file: str
    ok: bool
    client: str | None = None
    format: str | None = None
    fields: int = 0
    group: str | None = None  # "Kundennr (invoices)"
    error: str | None = None
    line: int | None = None
    key: str | None = None
    spec: MappingSpec | None = None


def _checked(file: str, load: Any) -> CheckResult:
    try:
        spec: MappingSpec = load()
    except ConfigError as exc:
        return CheckResult(file, False, error=str(exc), line=exc.line, key=exc.key)
    group = f"{'+'.join(spec.group.columns)} ({spec.group.mode})" if spec.group else None
    kind = "|".join(spec.format.alternatives) or spec.format.type  # "xls|xlsx": one export in either format
    return CheckResult(file, True, spec.client, kind, len(spec.fields), group, spec=spec)


def check_mapping(path: Path) -> CheckResult:
    """Load and validate the mapping file at ``path``."""
    return _checked(str(path), lambda: load_mapping(path))


def check_mapping_text(text: str, *, file: str = "<draft>") -> CheckResult:
    """Load and validate a mapping given as text (a draft in an editor)."""
    return _checked(file, lambda: parse_mapping(text, file=file))


def suggest_for_file(path: Path, *, client: str, format_type: str | None = None, layout: Path | None = None,
                     limits: LimitsConfig | None = None) -> Suggestion:
    """A mapping draft for an unseen client file (``layout``: a fixed-width record description)."""
    return suggest(read_sample(path, format_type, limits, layout=layout), client=client)


def preview_for_client(cfg: GatewayConfig, path: Path, client_id: str, *, mapping: Path | None = None,
                       limit: int | None = 50, today: date | None = None) -> Preview:
    """Map and validate ``path`` with the client's mapping (or ``mapping``); a configured client's
    ``hold_all`` applies, an unconfigured one has none."""
    spec = load_mapping(mapping or mapping_path(cfg, client_id))
    client = cfg.clients.get(client_id)
    return preview_file(path, spec, client_id, today=today or date.today(), limit=limit,
                        hold_all=bool(client and client.hold_all), limits=cfg.limits,
                        limitation=client.limitation if client else STATUTORY)


def install_mapping(cfg: GatewayConfig, client_id: str, source: Path, *, replace: bool = False) -> Path:
    """Copy a checked mapping to ``<mappings>/<client_id>.yaml`` (atomically); ConfigError if it does not load,
    names another client, or would overwrite a different installed file without ``replace``."""
    spec = load_mapping(source)
    if spec.client != client_id:
        raise ConfigError(f"the mapping is written for client '{spec.client}', not '{client_id}'",
                          file=str(source), key="client")
    target = cfg.mappings_dir / f"{client_id}.yaml"
    data = source.read_bytes()
    if target.exists() and target.read_bytes() != data and not replace:
        raise ConfigError(f"{target} exists and differs; pass --replace to overwrite it", file=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{client_id}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)  # a running serve's watcher never sees half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# ---------------------------------------------------------------- preview as JSON, defaults included

def _builtins(value: Any, path: str, defaults: list[str]) -> Any:
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for f in msgspec.structs.fields(value):
            v = getattr(value, f.name)
            sub = f"{path}.{f.encode_name}" if path else f.encode_name
            default = f.default if f.default is not msgspec.NODEFAULT else (
                f.default_factory() if f.default_factory is not msgspec.NODEFAULT else msgspec.NODEFAULT)
            if default is not msgspec.NODEFAULT and v == default and v not in (None, [], {}):
                defaults.append(sub)  # the model's default, not a value read from the file
            out[f.encode_name] = _builtins(v, sub, defaults)
        return out
    if isinstance(value, list):
        return [_builtins(v, f"{path}[{i}]", defaults) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _builtins(v, f"{path}.{k}", defaults) for k, v in value.items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (date, Decimal)):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    return value


def preview_document(p: Preview) -> dict[str, Any]:
    """``p`` as JSON-ready builtins: every canonical value of each claim, model defaults included and
    listed per row in ``defaults`` (paths like ``debtor.addresses[0].country``)."""
    doc: dict[str, Any] = {"file": p.file, "header": p.header, "columns": p.columns, "rows": [], "counts": p.counts,
           "truncated": p.truncated}
    for r in p.rows:
        defaults: list[str] = []
        claim = _builtins(r.claim, "", defaults) if r.claim is not None else None
        doc["rows"].append({"row": r.row, "reference": r.reference, "outcome": r.outcome, "claim": claim,
                            "defaults": defaults, "findings": msgspec.to_builtins(r.findings),
                            "sheet": r.sheet, "xpath": r.xpath})
    return doc


def dry_run_unconfigured(cfg: GatewayConfig, path: Path, client_id: str, *,
                         mapping: Path | None = None) -> IngestResult:
    """``ingest --dry-run`` for a client not configured yet: the file mapped and validated like a preview
    (no database, no keys: such a client has no stored claims to compare with, and no partner to route to),
    reported as a dry run."""
    # the ingest's imports are heavy (the whole store): only for this command
    from gateway.services.ingest_run import MAX_RESULTS, IngestResult, RowResult

    p = preview_for_client(cfg, path, client_id, mapping=mapping, limit=MAX_RESULTS)
    result = IngestResult(submission=None, status="processing", client_id=client_id, filename=path.name,
                          dry_run=True, rows=sum(p.counts.values()), accepted=p.counts.get("accepted", 0),
                          held=p.counts.get("held", 0), rejected=p.counts.get("rejected", 0),
                          results_truncated=p.truncated)
    result.results = [RowResult(r.row, r.reference, r.outcome, None, r.findings) for r in p.rows]
    result.status = "completed_with_errors" if result.rejected else "completed"
    return result
