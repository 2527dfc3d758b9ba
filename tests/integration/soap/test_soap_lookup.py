"""Claims found by the ERP's own reference: one in full, or the status of up to 1,000 in one call."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import zeep

from tests.integration.soap.conftest import Endpoint, claim, submit


def _fault(call: Any) -> zeep.exceptions.Fault:
    with pytest.raises(zeep.exceptions.Fault) as exc:
        call()
    return exc.value


def test_get_claim_by_reference_is_get_claim_by_the_erps_key(endpoint: Endpoint) -> None:
    c = endpoint.client()
    cid = submit(c, claim("ERP-77")).results.ClaimResult[0].claim_id
    by_ref = c.service.GetClaimByReference("  ERP-77 ")  # padded like a fixed-width ERP field
    assert (by_ref.claim_id, by_ref.state, by_ref.claim.creditor_reference) == (cid, "queued", "ERP-77")
    assert by_ref.account.open == Decimal("120.50")
    for ref, client in (("ERP-78", c), ("ERP-77", endpoint.client("other-erp"))):  # unknown; another client's
        f = _fault(lambda: client.service.GetClaimByReference(ref))
        assert f.code.endswith("Client.UnknownClaim") and f.message == "no claim with this creditor_reference"


def test_statuses_of_a_thousand_claims_in_one_call_in_the_order_asked(endpoint: Endpoint) -> None:
    c = endpoint.client()
    stored = [x.claim_id for x in submit(c, *(claim(f"ST-{i}") for i in range(300))).results.ClaimResult]
    stored += [x.claim_id for x in submit(c, claim("ST-HELD"), release=False).results.ClaimResult]
    submit(endpoint.client("other-erp"), claim("ST-OTHER"))
    c.service.CancelClaim(stored[5])
    asked = [f"ST-{i}" for i in reversed(range(300))] + ["ST-HELD", "ST-OTHER", "NOPE"] + [
        f"MISSING-{i}" for i in range(697)]
    assert len(asked) == 1000
    answer = c.service.GetClaimStatuses({"Reference": asked})
    assert [a.creditor_reference for a in answer] == asked
    by_ref = {a.creditor_reference: a for a in answer}
    assert [by_ref[f"ST-{i}"].claim_id for i in range(300)] == stored[:300]
    assert (by_ref["ST-0"].found, by_ref["ST-0"].state, by_ref["ST-0"].open_amount, by_ref["ST-0"].currency) == (
        True, "queued", Decimal("120.50"), "EUR")
    assert by_ref["ST-5"].state == "cancelled_by_client" and by_ref["ST-HELD"].state == "held"
    for ref in ("ST-OTHER", "NOPE", "MISSING-3"):  # another client's reference looks like an unknown one
        assert (by_ref[ref].found, by_ref[ref].claim_id, by_ref[ref].state) == (False, None, None)
    too_many = _fault(lambda: c.service.GetClaimStatuses({"Reference": [f"R-{i}" for i in range(1001)]}))
    assert too_many.code.endswith("Client.Validation")
    assert too_many.message == "references: send 1 to 1000 references, got 1001"
