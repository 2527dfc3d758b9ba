"""The http adapter against a partner's server that misbehaves on the wire: answers dripped a byte at a time,
a server that never speaks, answers of gigabytes and gzip bombs, redirects, refused credentials.

Each test runs the real adapter against a real server on 127.0.0.1 (``hostile_http``) and asserts what the
dispatcher would act on: the error, whether it is retried, and that the adapter gave up by itself.
"""

from __future__ import annotations

import json
import logging
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Batch, Operation
from adapters.rest import HttpAdapter
from gateway.domain.lifecycle import State
from gateway.errors import DeliveryError
from gateway.services.dispatch import Dispatcher, Lanes
from gateway.services.ingest import ingest_file
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.contract.harness import PARTNER, Harness, claims_by_state, gateway_for, keys_template  # noqa: F401
from tests.integration.test_partner_faults_2 import DEMO
from tests.integration.hostile_http import Conn, HostileServer, Request, silent
from tests.support import wait_for

PLANTED = "Zacharias Quuxbaum-Planted"


def batch() -> Batch:
    return Batch(batch_id="B-1", partner_id="p", filename="B-1.xml.p7m", payload=b"\x30\x80cms", claim_ids=[1, 2])


CREATED = json.dumps({"claims": [{"external_id": 1, "file_number": "AZ-1"},
                                 {"external_id": 2, "file_number": "AZ-2"}]}).encode()


def adapter(url: str, **options: object) -> HttpAdapter:
    return HttpAdapter("p", {"url": url, "timeout": 2.0, "deadline": 1.5, **options})


@pytest.fixture
def cut() -> Iterator[list[int]]:
    """Bytes a dripping server could not send because the client had hung up (one entry per connection)."""
    yield []


def _drip(data: bytes, conn: Conn, cut: list[int], beat: float = 0.2) -> None:
    for i in range(len(data)):
        if not conn.send(data[i:i + 1]) or not conn.wait(beat):
            cut.append(len(data) - i)
            return


def test_an_answer_dripped_a_byte_at_a_time_ends_at_the_deadline(cut: list[int]) -> None:
    """Each byte comes well within the per-read timeout, so only a deadline on the whole call ends it: the call
    fails retryably naming the deadline, and the client hangs up long before the partner's answer is through."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(CREATED)}\r\n\r\n".encode()

    def behave(req: Request, conn: Conn) -> None:
        conn.send(head)
        _drip(CREATED, conn, cut)

    with HostileServer(behave) as server:
        a = adapter(server.url)
        with pytest.raises(DeliveryError, match="deadline of 1.5 s") as err:
            a.deliver(batch())
        a.close()
        assert err.value.retryable
        wait_for("the dripping server to see the client hang up", lambda: cut)
    assert cut[0] > 0  # the server still had bytes to send when the client left


def test_a_status_line_dripped_a_byte_at_a_time_ends_at_the_deadline(cut: list[int]) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(CREATED)}\r\n\r\n".encode()

    def behave(req: Request, conn: Conn) -> None:
        _drip(head + CREATED, conn, cut)

    with HostileServer(behave) as server:
        a = adapter(server.url)
        with pytest.raises(DeliveryError, match="deadline") as err:
            a.fetch_updates(None)
        a.close()
        assert err.value.retryable
        wait_for("the dripping server to see the client hang up", lambda: cut)


def test_a_server_that_accepts_and_never_speaks_is_a_retryable_timeout() -> None:
    with HostileServer(silent) as server:
        a = adapter(server.url, timeout=0.5, deadline=60)
        with pytest.raises(DeliveryError, match="timed out") as err:
            a.deliver(batch())
        a.close()
        assert err.value.retryable


def test_a_server_that_never_speaks_tls_is_a_retryable_timeout() -> None:
    with HostileServer(silent) as server:
        a = adapter(server.url.replace("http://", "https://"), timeout=0.5, deadline=60)
        with pytest.raises(DeliveryError, match="timed out|deadline") as err:
            a.deliver(batch())
        a.close()
        assert err.value.retryable


def _stream(conn: Conn, head: bytes, piece: bytes, sent: list[int]) -> None:
    if not conn.send(head):
        return
    n = 0
    while n < 10 * 1024 ** 3 and conn.send(piece):
        n += len(piece)
    sent.append(n)


def test_an_endless_answer_is_cut_at_the_limit_and_memory_stays_bounded() -> None:
    """A 200 announcing 10 GB and sending it: refused (retryably) at ``max_answer_bytes``, the adapter's memory
    stays near that limit, and the server is left with almost all of its answer unsent."""
    sent: list[int] = []
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n"

    def behave(req: Request, conn: Conn) -> None:
        _stream(conn, head, b"[" + b" " * 65535, sent)

    with HostileServer(behave) as server:
        a = adapter(server.url, max_answer_bytes=1024 * 1024, deadline=60)
        tracemalloc.start()
        try:
            with pytest.raises(DeliveryError, match="larger than 1048576 bytes") as err:
                a.fetch_updates(None)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        a.close()
        assert err.value.retryable
    assert peak < 16 * 1024 * 1024, peak
    assert sent and sent[0] < 1024 ** 3


def _bomb(size: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"0" * (1 << 20)
    return b"".join(z.compress(zeros) for _ in range(size >> 20)) + z.flush()


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    """256 MB of zeros in 256 KB of gzip (``Content-Encoding: gzip``): inflated only up to the limit."""
    body = _bomb(256 << 20)

    def behave(req: Request, conn: Conn) -> None:
        conn.answer(200, body, {"Content-Encoding": "gzip"})

    with HostileServer(behave) as server:
        a = adapter(server.url, max_answer_bytes=1024 * 1024, deadline=60)
        tracemalloc.start()
        try:
            with pytest.raises(DeliveryError, match="larger than") as err:
                a.fetch_updates(None)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        a.close()
        assert err.value.retryable
    assert peak < 16 * 1024 * 1024, peak


def test_a_gzip_answer_within_the_limit_is_read() -> None:
    body = zlib.compress(json.dumps({"events": [], "next": "7"}).encode(), wbits=16 + zlib.MAX_WBITS)

    def behave(req: Request, conn: Conn) -> None:
        conn.answer(200, body, {"Content-Encoding": "gzip"})

    with HostileServer(behave) as server:
        a = adapter(server.url)
        page = a.fetch_updates("3")
        a.close()
    assert page.updates == [] and page.cursor == "7"
    assert server.requests[0].headers["accept-encoding"] == "gzip"


@pytest.mark.parametrize("encoding", ["br", "gzip"])
def test_an_encoding_not_asked_for_or_not_inflating_is_a_retryable_malformed_answer(encoding: str) -> None:
    def behave(req: Request, conn: Conn) -> None:
        conn.answer(200, b"\x1b\x00not compressed at all", {"Content-Encoding": encoding})

    with HostileServer(behave) as server:
        a = adapter(server.url)
        with pytest.raises(DeliveryError, match="answer not understood") as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable


@pytest.mark.parametrize(("status", "retryable"), [(301, False), (308, False), (302, True), (307, True)])
def test_a_redirect_is_never_followed(status: int, retryable: bool) -> None:
    """A partner's server redirecting (to another host, to plain http, in a loop) gets nothing more: the call
    fails, naming the status and the target host only; moved for good (301, 308) is dead at once for the
    operator to check the URL. Before, a per-claim operation answered by a redirect counted as done."""
    def behave(req: Request, conn: Conn) -> None:
        conn.answer(status, b"", {"Location": f"http://elsewhere.example/v1/claims?name={PLANTED}"})

    op = Operation(operation="cancel", key="k", claim_id=1, partner_reference="AZ-1", data={"reason": "paid"})
    with HostileServer(behave) as server:
        a = adapter(server.url)
        for call in (lambda: a.deliver(batch()), lambda: a.operate(op)):
            with pytest.raises(DeliveryError, match=rf"HTTP {status} redirects to http://elsewhere.example") as err:
                call()
            assert err.value.retryable is retryable
            assert PLANTED not in str(err.value)
        a.close()
    assert len(server.requests) == 2  # one per call: nothing followed


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_dead_at_once_and_say_what_to_mend(status: int, caplog: pytest.LogCaptureFixture
                                                                   ) -> None:
    caplog.set_level(logging.DEBUG)

    def behave(req: Request, conn: Conn) -> None:
        conn.answer(status, json.dumps({"code": "AUTH", "error": f"token of {PLANTED} expired"}).encode())

    with HostileServer(behave) as server:
        a = adapter(server.url)
        with pytest.raises(DeliveryError, match=rf"HTTP {status} \(code AUTH\).*credentials") as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable is False
    assert PLANTED not in str(err.value) and PLANTED not in caplog.text


def test_a_huge_error_body_is_not_read_whole() -> None:
    sent: list[int] = []
    head = b"HTTP/1.1 503 X\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n"

    def behave(req: Request, conn: Conn) -> None:
        _stream(conn, head, b" " * 65536, sent)

    with HostileServer(behave) as server:
        a = adapter(server.url, deadline=60)
        with pytest.raises(DeliveryError, match="HTTP 503") as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable and sent and sent[0] < 1024 ** 3


def test_the_deadline_covers_the_whole_call_in_another_thread_too() -> None:
    """The dispatcher calls from worker threads: each call's own event loop works there as well."""
    out: list[BaseException] = []

    def behave(req: Request, conn: Conn) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        while conn.send(b" ") and conn.wait(0.2):
            pass

    with HostileServer(behave) as server:
        a = adapter(server.url)

        def run() -> None:
            try:
                a.deliver(batch())
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                out.append(exc)
        t = threading.Thread(target=run)
        t.start()
        t.join(timeout=60)
        a.close()
    assert out and isinstance(out[0], DeliveryError) and "deadline" in str(out[0])



# -- the dispatcher with such a partner ---------------------------------------------------------------------

class _HostilePartner(Harness):
    """A gateway partner (alias http) served by a ``HostileServer``."""

    alias = "http"

    def __init__(self, base: Path, url: str) -> None:
        super().__init__(base)
        self.url = url

    def options(self) -> dict[str, Any]:
        return {"url": self.url, "timeout": 2.0, "deadline": 1.0}

    def partner(self) -> dict[str, Any]:
        return {**super().partner(), "retry": {"in_call_attempts": 2, "in_call_wait_seconds": 0.01,
                                               "in_call_wait_max_seconds": 0.02}}


def _drip_for_ever(req: Request, conn: Conn) -> None:
    if conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"):
        while conn.send(b" ") and conn.wait(0.2):
            pass


def test_a_dripping_partner_frees_its_lane_and_the_row_is_retried(tmp_path: Path, db_url: str,
                                                                   keys_template: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """What serve runs (``Lanes``) against a partner that drips every answer for ever: while the row is in
    flight its age shows (what /healthz compares with dispatcher.stuck_seconds, and ``dispatch.slow`` names it);
    then the attempt ends by the deadline, the lane is free, the row waits for its retry with the reason, and
    its claims stay on their way (not failed). Before, the row stayed in flight for good."""
    with HostileServer(_drip_for_ever) as server:
        harness = _HostilePartner(tmp_path, server.url)
        with gateway_for(harness, tmp_path, db_url, keys_template) as app:
            ingest_file(app, DEMO, "demo")
            lanes = Lanes(Dispatcher(app, owner="w"), width=2, slow_seconds=0.3)
            try:
                assert lanes.step()
                assert PARTNER in lanes.ages()
                wait_for("the lane to name the slow row", lambda: (lanes.step(), "dispatch.slow" in caplog.text)[1])
                wait_for("the attempt to end by itself", lambda: (lanes.step(0.1), not lanes.in_flight())[1])
            finally:
                lanes.close()
            with read_tx(app.engine) as conn:
                [row] = [dict(r) for r in outbox_store.listing(conn)]
            assert row["status"] == "pending" and row["attempts"] == 1
            assert "deadline of 1 s" in row["last_error"]
            assert State.FAILED not in claims_by_state(app)
            assert State.DELIVERING in claims_by_state(app)
    assert len(server.requests) == 2  # the in-call retries, each ended by the deadline


def test_a_429_with_retry_after_is_waited_out_not_hammered(tmp_path: Path, db_url: str, keys_template: Path) -> None:
    """The partner answers 429 with ``Retry-After: 120``. The attempt makes no quick in-call retries (three
    requests within a second before), and the row waits at least the 120 s it was asked to (the outbox's own
    backoff here is 0.05 s at most), the wait named in its error."""
    def behave(req: Request, conn: Conn) -> None:
        conn.answer(429, b'{"code": "RATE_LIMITED"}', {"Retry-After": "120"})

    with HostileServer(behave) as server:
        with gateway_for(_HostilePartner(tmp_path, server.url), tmp_path, db_url, keys_template) as app:
            ingest_file(app, DEMO, "demo")
            started = app.now()
            worker = Dispatcher(app, owner="w")
            assert worker.run_once()
            assert not worker.run_once()  # nothing due: the row waits
            worker.close()
            with read_tx(app.engine) as conn:
                [row] = [dict(r) for r in outbox_store.listing(conn)]
            assert row["status"] == "pending" and "Retry-After 120 s" in row["last_error"]
            assert (row["available_at"].replace(tzinfo=started.tzinfo) - started).total_seconds() >= 120
            assert State.FAILED not in claims_by_state(app)
    assert len(server.requests) == 1


def test_retry_after_as_a_date_is_read_and_bounded() -> None:
    from email.utils import format_datetime
    import datetime as dt

    in_an_hour = format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1), usegmt=True)
    answers = iter([("503", in_an_hour), ("429", "999999999"), ("429", "soon")])

    def behave(req: Request, conn: Conn) -> None:
        status, after = next(answers)
        conn.answer(int(status), b"", {"Retry-After": after})

    with HostileServer(behave) as server:
        a = adapter(server.url)
        waits = []
        for _ in range(3):
            with pytest.raises(DeliveryError) as err:
                a.deliver(batch())
            assert err.value.retryable
            waits.append(err.value.retry_after)
        a.close()
    assert waits[0] is not None and 3000 < waits[0] <= 3600
    assert waits[1:] == [86400.0, None]


def test_a_retry_after_of_other_digits_is_no_wait_not_a_crash() -> None:
    """``'²'.isdigit()`` is true but ``float('²')`` raises: a 503 with such a Retry-After must stay a retryable
    DeliveryError (a ValueError out of the adapter would make the row dead at once)."""
    def behave(req: Request, conn: Conn) -> None:
        conn.answer(503, b"", {"Retry-After": "\u00b2"})

    with HostileServer(behave) as server:
        a = adapter(server.url)
        with pytest.raises(DeliveryError) as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable and err.value.retry_after is None


def test_the_operators_check_of_a_dripping_partner_ends_at_its_deadline(cut: list[int],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`gateway partners test` asks the partner's health URL (or WSDL) as deliveries do, bounded in time: a partner
    dripping its answer ends the check with a line that says so, instead of holding the operator's command."""
    from gateway.services import partner_check
    monkeypatch.setattr(partner_check, "CHECK_DEADLINE", 1.0)
    body = b"ok" * 200

    def behave(req: Request, conn: Conn) -> None:
        conn.send(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        _drip(body, conn, cut)

    with HostileServer(behave) as server:
        with pytest.raises(DeliveryError, match="no whole answer within 1 s") as err:
            partner_check._get(f"{server.url}/health", "http", 2.0, {})
        assert err.value.retryable
        wait_for("the dripping server to see the check hang up", lambda: cut)
