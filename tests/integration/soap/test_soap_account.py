"""The case account, overpayment refusal and unread marks over SOAP, as an ERP sees them through zeep."""

from __future__ import annotations

from decimal import Decimal

import pytest
import zeep

from adapters.base import PartnerUpdate
from gateway.services.dispatch import Dispatcher
from gateway.services.partner_updates import apply_updates
from tests.integration.soap.conftest import Endpoint, claim, submit


def test_account_overpayment_and_unread_over_soap(endpoint: Endpoint) -> None:
    app, c = endpoint.app, endpoint.client()
    app.config.partners["demo-agency"].status_map["BEZ"] = "closed_paid"
    cid = submit(c, claim("ACC-1", principal_amount="125.50"), release=True).results.ClaimResult[0].claim_id
    worker = Dispatcher(app, owner="test")
    worker.drain()
    worker.close()
    with pytest.raises(zeep.exceptions.Fault) as exc:
        c.service.ReportDirectPayment(claim_id=cid, amount=Decimal("100000"), date="2025-06-01")
    assert exc.value.code.endswith("Client.Validation") and "exceeds the open amount of 125.50 EUR" in exc.value.message
    c.service.ReportDirectPayment(claim_id=cid, amount=Decimal("50.00"), date="2025-06-01")
    assert c.service.MarkSeen(all_claims=True) == 1  # the handover was news
    apply_updates(app, "demo-agency", [
        PartnerUpdate(update_id="p1", claim_id=cid, kind="payment", amount="100.00", currency="EUR",
                      partner_reference="AZ-77"),
        PartnerUpdate(update_id="p2", claim_id=cid, kind="status", code="BEZ", partner_reference="AZ-77")])
    info = c.service.GetClaim(claim_id=cid)
    a = info.account
    assert (info.state, info.claim.total_open_amount, a.open, a.overpaid) == (
        "closed_paid", Decimal("0.00"), Decimal("0.00"), Decimal("24.50"))
    assert (a.paid_direct, a.paid_agency, a.partner_file_number, a.closing_reason) == (
        Decimal("50.00"), Decimal("100.00"), "AZ-77", "BEZ")
    page = c.service.ListClaims({"unread": True})
    [row] = page.claims.ClaimSummary
    assert (row.claim_id, row.unread, row.open_amount, page.total, page.total_exact) == (
        cid, True, Decimal("0.00"), 1, True)
    assert c.service.MarkSeen(claim_ids={"long": [cid]}) == 1
    assert c.service.ListClaims({"unread": True}).total == 0 and c.service.GetClaim(claim_id=cid).unread is False
