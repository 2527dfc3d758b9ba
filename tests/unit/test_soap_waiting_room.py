"""The SOAP waiting room's sweep thread (outside the supervisor's tasks): a request whose hand-over fails is closed
and said, the others still go to a worker, and the thread goes on; the server's readiness looks at it.

Stand-ins for the parked connections: the room uses only their deadline, peer and close."""

from __future__ import annotations

import logging
import time

import pytest

from gateway.entrypoints.connection_limits import ConnectionLimits
from gateway.entrypoints.soap.waiting_room import WaitingRoom
from tests.support import wait_for


class Parked:
    def __init__(self, name: str) -> None:
        self.name, self._peer, self.deadline, self.parked, self.closed = name, "10.0.0.1", time.monotonic(), True, False

    def close(self) -> None:
        self.closed = True


def test_a_failing_hand_over_closes_that_request_and_the_sweep_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    handed: list[str] = []

    def dispatch(conn: Parked) -> None:
        if conn.name == "first":
            raise RuntimeError("worker queue broken")
        handed.append(conn.name)

    limits = ConnectionLimits("soap", per_address=4, total=8)
    room = WaitingRoom(dispatch, limits, interval=0.05)  # type: ignore[arg-type]
    room.start()
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.soap"):
            first, second = Parked("first"), Parked("second")
            room._waiting["10.0.0.1"] = [first, second]  # type: ignore[list-item]  # both past their deadline
            wait_for("the late requests to be handed over", lambda: handed or None, timeout=10)
            assert handed == ["second"] and first.closed
            assert [r.getMessage().split()[0] for r in caplog.records] == ["soap.waiting_room_failed"]
            later = Parked("later")
            room._waiting["10.0.0.1"] = [later]  # type: ignore[list-item]
            wait_for("the next sweep", lambda: "later" in handed or None, timeout=10)
        assert room.alive()
    finally:
        room.close()
    assert not room.alive()
