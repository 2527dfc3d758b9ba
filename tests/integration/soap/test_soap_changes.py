"""The change feed as an ERP reads it: start from now, each change says what it is; cursors and limits v2 refuses,
and v1 reads as it always did."""

from __future__ import annotations

from typing import Any

import pytest
import zeep
from zeep.transports import Transport

from tests.integration.soap.conftest import Endpoint, claim, submit


def _events(feed: Any) -> list[Any]:
    return list(feed.events.Event) if feed.events is not None else []


def _v2(endpoint: Endpoint) -> zeep.Client:
    return zeep.Client(endpoint.url + "/v2?wsdl", transport=Transport(session=endpoint.session()))


def _fault(call: Any) -> zeep.exceptions.Fault:
    with pytest.raises(zeep.exceptions.Fault) as exc:
        call()
    return exc.value


def test_from_now_answers_the_head_and_the_feed_goes_on_from_there(endpoint: Endpoint) -> None:
    c = endpoint.client()
    assert (c.service.GetChanges(from_now=True).next_cursor, c.service.GetChanges(0).next_cursor) == (0, 0)
    first = submit(c, claim("CH-1"), claim("CH-2"), release=False).results.ClaimResult
    everything = _events(c.service.GetChanges(0))
    now = c.service.GetChanges(from_now=True)
    assert (_events(now), now.next_cursor, now.more) == ([], everything[-1].event_id, False)
    # another client's later events do not move this client's head
    submit(endpoint.client("other-erp"), claim("OTHER-1"))
    assert c.service.GetChanges(from_now=True).next_cursor == now.next_cursor
    c.service.ReleaseClaims(claim_ids={"long": [first[0].claim_id]})
    after = _events(c.service.GetChanges(now.next_cursor))
    assert [(e.claim_id, e.kind, e.change) for e in after] == [(first[0].claim_id, "released", "state_change")]


def test_each_change_says_what_it_is(endpoint: Endpoint) -> None:
    c = endpoint.client()
    cid = submit(c, claim("CH-K")).results.ClaimResult[0].claim_id
    c.service.SetLabels(cid, {"Label": ["vip"]})
    changes = [(e.kind, e.change) for e in _events(c.service.GetChanges(0))]
    assert changes == [("intake", "state_change"), ("labels_set", "client_request")]
    history = c.service.GetClaimHistory(cid)
    assert [e.change for e in history] == ["state_change", "client_request"]


def test_v2_refuses_a_cursor_ahead_of_the_head_and_limits_out_of_range(endpoint: Endpoint) -> None:
    submit(endpoint.client(), claim("CH-A"))
    c = _v2(endpoint)
    head = c.service.GetChanges(from_now=True).next_cursor
    assert _events(c.service.GetChanges(head)) == []  # at the head: nothing new, not a fault
    ahead = _fault(lambda: c.service.GetChanges(head + 1000))
    assert ahead.code.endswith("Client.Validation")
    assert ahead.message == (f"cursor: {head + 1000} is ahead of the newest change ({head}): send 0, a next_cursor "
                             "of an earlier answer, or from_now")
    for limit in (501, 0, -1):
        f = _fault(lambda: c.service.GetChanges(0, limit))
        assert f.message == f"limit: must be 1 to 500, got {limit}", f.message
    assert _fault(lambda: c.service.GetChanges(-1)).message.startswith("cursor: must be 0 or a next_cursor")
    assert len(_events(c.service.GetChanges(0, 500))) == 1


def test_v1_reads_limit_and_cursor_as_it_always_did(endpoint: Endpoint) -> None:
    c = endpoint.client()
    submit(c, *(claim(f"CH-{i}") for i in range(101)))  # 101 intake events
    head = c.service.GetChanges(from_now=True).next_cursor
    for limit in (None, 0):  # absent or 0: the default page of 100
        page = c.service.GetChanges(0, limit)
        assert (len(_events(page)), page.more) == (100, True)
    assert len(_events(c.service.GetChanges(0, 501))) == 101  # above 500: read as 500, not refused
    assert len(_events(c.service.GetChanges(0, -1))) == 1  # below 1: read as 1
    assert [e.event_id for e in _events(c.service.GetChanges(-7, 3))] == [
        e.event_id for e in _events(c.service.GetChanges(0, 3))]  # a negative cursor is 0
    ahead = c.service.GetChanges(head + 1000)  # beyond the head: no events, the cursor back, no fault
    assert (_events(ahead), ahead.next_cursor, ahead.more) == ([], head + 1000, False)
