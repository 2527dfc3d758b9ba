"""An ``http`` partner's delivery is two requests, the create and the release: one deadline (option ``deadline``)
for both, as for a SOAP partner's WSDL and call. Each had a deadline of its own, so one try could last twice the
deadline and an attempt ``retry.in_call_attempts`` x 2 x ``deadline`` (720 s with the defaults), past
``dispatcher.stuck_seconds`` (600 s): a partner slow but answering was reported stuck.

A partner on loopback that answers the create and the release each after most of the deadline (the server's waits,
which only get longer on a loaded machine): the delivery as a whole is over its deadline and ends there."""

from __future__ import annotations

from adapters.rest import HttpAdapter
from gateway.errors import DeliveryError
from tests.integration.hostile_http import Conn, HostileServer, Request
from tests.integration.test_partner_hostile_soap import batch

DEADLINE = 3.0  # each wait below leaves 1.2 s of it for the rest of a step (the next request on a loaded machine)
CREATED = b'{"claims": [{"external_id": 1, "file_number": "AZ-1"}]}'


def test_the_create_and_the_release_share_one_deadline() -> None:
    def behave(req: Request, conn: Conn) -> None:
        first_try = len(server.requests) <= 2  # the next delivery is answered at once
        if conn.wait(0.6 * DEADLINE if first_try else 0):
            conn.answer(200, CREATED if req.path == "/v1/claims" else b"{}")
    server = HostileServer(behave)
    with server:
        a = HttpAdapter("p", {"url": server.url, "timeout": 10.0, "deadline": DEADLINE})
        try:
            a.deliver(batch())
            raise AssertionError("the create and the release together took longer than the deadline, and it went on")
        except DeliveryError as exc:
            assert exc.retryable and f"deadline of {DEADLINE:g} s" in str(exc), exc
        # the create was answered and the release asked: it is the two together that went over
        assert [r.path for r in server.requests] == ["/v1/claims", "/v1/claims/release"]
        # the next delivery has a deadline of its own (not what was left of the first's)
        assert a.deliver(batch()).references == {1: "AZ-1"}
        a.close()
