"""A SOAP partner's first call loads the WSDL and then calls the operation: one deadline (option ``deadline``) for
both. Each had a deadline of its own, so a partner slow on both (each within its deadline) kept one attempt for up
to twice the deadline, and ``retry.in_call_attempts`` x ``deadline``, what an attempt is documented to last and what
``dispatcher.stuck_seconds`` is set against, did not hold: a healthy but slow first call was reported stuck.

A partner on loopback whose WSDL and answer each come after most of the deadline (the server's waits, which only
ever get longer on a loaded machine): the call as a whole is over its deadline and ends there."""

from __future__ import annotations

from pathlib import Path

from adapters.soap import SoapAdapter
from adapters.soap_wsdl import wsdl
from gateway.errors import DeliveryError
from tests.integration.hostile_http import Conn, HostileServer, Request
from tests.integration.test_partner_hostile_soap import CREATED, batch

DEADLINE = 3.0  # each wait below leaves 1.2 s of it for the rest of a step (zeep's parse, the next request)


def _slow_partner(wsdl_wait: float, answer_wait: float) -> HostileServer:
    def behave(req: Request, conn: Conn) -> None:
        if req.method == "GET":
            if conn.wait(wsdl_wait):
                conn.answer(200, wsdl(f"{server.url}/soap").encode(), content_type="text/xml")
        elif conn.wait(answer_wait if len(server.requests) <= 2 else 0):  # later calls are answered at once
            conn.answer(200, CREATED, content_type="text/xml")
    server = HostileServer(behave)
    return server


def test_the_wsdl_and_the_first_call_share_one_deadline(tmp_path: Path) -> None:
    with _slow_partner(0.6 * DEADLINE, 0.6 * DEADLINE) as server:
        a = SoapAdapter("p", {"wsdl": f"{server.url}/wsdl", "timeout": 10.0, "deadline": DEADLINE})
        try:
            a.deliver(batch())
            raise AssertionError("the WSDL and the call together took longer than the deadline, and it went on")
        except DeliveryError as exc:
            assert exc.retryable and f"deadline of {DEADLINE:g} s" in str(exc), exc
        # the WSDL came and the call was made: it is the two together that went over
        assert [r.method for r in server.requests] == ["GET", "POST"]
        # the next call has the WSDL already, and a deadline of its own (not what was left of the first's)
        assert a.deliver(batch()).references == {1: "AZ-1"}
        assert [r.method for r in server.requests] == ["GET", "POST", "POST"]
        a.close()
