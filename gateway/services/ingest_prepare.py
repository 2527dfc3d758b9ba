"""The database-free half of ingest: map, validate, route and encrypt a chunk of rows.

It runs in the ingest process, or in worker processes when a large file is spread over the cores
(``ingest_file(workers=N)``): each worker builds its own ``Preparer`` once (mapping compiled
against the file's header, router, field cipher from the key files) and turns chunks of
``SourceRow``s into ``PreparedRow``s, which the parent stores in file order.
"""

from __future__ import annotations

import gc
from datetime import date
from decimal import Decimal
from typing import NamedTuple


from gateway.config import GatewayConfig
from gateway.crypto.fieldcrypt import FieldCipher, load_field_cipher
from gateway.domain.findings import Finding, Outcome, Severity, outcome_of
from gateway.domain.rules import check_claim
from gateway.mapping.engine import MappedRow, compile_mapping
from gateway.mapping.spec import MappingSpec
from gateway.readers.base import SourceRow
from gateway.services.routing import Router
from gateway.store import fingerprints
from gateway.store.claims import PreparedClaim, prepare_claim

DATA_KEY_FILE = "data-keys.json"  # the same file bootstrap.App.cipher reads


class PreparedRow(NamedTuple):
    row: int
    reference: str | None
    findings: list[Finding]
    claim: PreparedClaim | None  # None: rejected (or nothing to store)
    total: Decimal | None        # the claim's total open amount
    currency: str | None
    no_partner: bool             # no routing rule and no client default: held for the operator
    sheet: str | None
    xpath: str | None
    # Of the claim as mapped (computed here, where the claim is at hand: the store would have to decrypt
    # the prepared columns again to get it back).
    fingerprint: str | None = None


class Preparer:
    """Everything one process needs to prepare rows of one file."""

    def __init__(self, config: GatewayConfig, spec: MappingSpec, header: list[str], header_row: int, file: str,
                 client_id: str, today: date, cipher: FieldCipher | None = None) -> None:
        self.client_id, self.today = client_id, today
        self.mapper = compile_mapping(spec, header, file=file, header_row=header_row)
        self.router = Router(config)
        self.cipher = cipher or load_field_cipher(config.keys_dir / DATA_KEY_FILE, config.keys.data_keys_env)
        self.hold_all = config.client(client_id).hold_all or spec.policy.hold_all
        self.limitation = config.client(client_id).limitation

    def chunk(self, rows: list[SourceRow]) -> list[PreparedRow]:
        """Prepare rows in order; never raises for a row's content (that is what findings are for)."""
        map_row, finish, client_id = self.mapper.map_row, self.finish, self.client_id
        return [finish(map_row(src, client_id), src.sheet, src.xpath) for src in rows]

    def finish(self, mapped: MappedRow, sheet: str | None = None, xpath: str | None = None) -> PreparedRow:
        """Validate, apply the hold policy, route and encrypt one mapped row."""
        findings = list(mapped.findings)
        claim = mapped.claim
        if claim is None:
            return PreparedRow(mapped.row, mapped.reference, findings, None, None, None, False, sheet, xpath)
        found = check_claim(claim, self.today, self.limitation)  # the rules, then the limitation warnings
        if found:
            findings.extend(self.mapper.locate(found, mapped.row, claim))
        if self.hold_all:
            findings.append(Finding(code="awaiting_release", severity=Severity.HOLD, row=mapped.row,
                                    message="held until the client releases it (collection run)"))
        if findings and outcome_of(findings) is Outcome.REJECTED:
            return PreparedRow(mapped.row, mapped.reference, findings, None, None, None, False, sheet, xpath)
        partner = self.router.pick(claim)
        total = claim.total_open_amount
        # The partner goes into the stored columns and body, not into the claim: the fingerprint leaves it out.
        return PreparedRow(mapped.row, mapped.reference, findings,
                           prepare_claim(self.cipher, claim, total, partner_id=partner), total, claim.currency,
                           partner is None, sheet, xpath, fingerprints.fingerprint(self.cipher, claim))


_WORKER: Preparer | None = None


def init_worker(config: GatewayConfig, spec: MappingSpec, header: list[str], header_row: int, file: str,
                client_id: str, today: date) -> None:
    """Process-pool initializer: build this worker's Preparer once."""
    global _WORKER
    _WORKER = Preparer(config, spec, header, header_row, file, client_id, today)
    gc.set_threshold(10_000, 50, 100)  # a process that only prepares rows: see ingest_run._fewer_collections


def worker() -> Preparer:
    """This worker process's Preparer (built by ``init_worker``)."""
    assert _WORKER is not None, "init_worker did not run"
    return _WORKER
