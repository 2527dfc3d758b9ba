"""Limitation over SOAP through zeep: a time-barred claim is held with the rule's inputs in its finding, ExplainClaim
says what to do, ReleaseClaims skips it without a reason and records the reason it is given; a claim near its end is
accepted with a warning; the rule's dates travel in ClaimInput."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.domain.limitation import add_months
from tests.integration.soap.conftest import Endpoint, claim, submit

TODAY = datetime.now(timezone.utc).date()


def _items(value: object, name: str) -> list[Any]:  # zeep wraps arrays in their item element
    return list(getattr(value, name)) if value is not None else []


def test_time_barred_claim_is_held_explained_and_released_only_with_a_reason(endpoint: Endpoint) -> None:
    c = endpoint.client()
    old = f"{TODAY.year - 4}-05-02"
    ack = add_months(TODAY, -36) + timedelta(days=10)
    r = submit(c, claim("R-OLD", invoice_date=old, due_date=old),
               claim("R-NEAR", invoice_date=old, due_date=old, acknowledgement_date=ack.isoformat()),
               claim("R-NEW"))
    [barred, near, new] = _items(r.results, "ClaimResult")
    assert (barred.outcome, barred.state) == ("held", "held")
    [f] = _items(barred.findings, "Finding")
    assert (f.code, f.severity, f.field) == ("time_barred", "hold", "due_date")
    assert f"ended on {TODAY.year - 1}-12-31" in f.message and f"due date {old}" in f.message
    assert near.outcome == "accepted"
    assert [(x.code, x.severity) for x in _items(near.findings, "Finding")] == [("limitation_near", "warning")]
    assert f"acknowledgement date {ack.isoformat()}" in _items(near.findings, "Finding")[0].message
    assert new.outcome == "accepted" and not _items(new.findings, "Finding")

    explained = c.service.ExplainClaim(barred.claim_id)
    [why] = _items(explained.reasons, "Reason")
    assert (why.code, why.field) == ("time_barred", "due_date") and "release it with a reason" in why.fix

    refused = c.service.ReleaseClaims(claim_ids={"long": [barred.claim_id]})
    assert not _items(refused.released, "long")
    [skip] = _items(refused.skipped, "Skipped")
    assert skip.claim_id == barred.claim_id and skip.reason.startswith("time-barred (time_barred): release it")
    assert c.service.GetClaim(barred.claim_id).state == "held"

    reason = f"limitation interrupted by acknowledgement on {TODAY.year - 2}-03-01"
    done = c.service.ReleaseClaims(claim_ids={"long": [barred.claim_id]}, reason=reason)
    assert _items(done.released, "long") == [barred.claim_id]
    last = c.service.GetClaimHistory(barred.claim_id)[-1]
    assert (last.kind, last.state) == ("released", "queued")
    assert json.loads(last.data) == {"codes": ["time_barred"], "reason": reason, "run": done.run}


def test_a_dunning_order_date_over_soap_keeps_the_claim(endpoint: Endpoint) -> None:
    c = endpoint.client()
    old = f"{TODAY.year - 5}-05-02"
    r = submit(c, claim("R-COURT", invoice_date=old, due_date=old, dunning_order_date=f"{TODAY.year - 3}-03-01"))
    [res] = _items(r.results, "ClaimResult")
    assert res.outcome == "accepted" and not _items(res.findings, "Finding")
    got = c.service.GetClaim(res.claim_id).claim
    assert str(got.dunning_order_date) == f"{TODAY.year - 3}-03-01"
