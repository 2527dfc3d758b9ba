"""Requests of the SOAP endpoint that wait for one of their address's body-wait slots (``connection.py``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.entrypoints.connection_limits import ConnectionLimits
from gateway.faults import describe

if TYPE_CHECKING:
    from gateway.entrypoints.soap.connection import GuardedConnection

log = logging.getLogger("gateway.soap")


class WaitingRoom:
    """Requests waiting for one of their address's body-wait slots, outside cheroot's selector.

    Such a request has its header in and a body over ``PRE_READ`` (or chunked) still to come, while its address
    already has its share of workers waiting on bodies. In the selector it would be handed to a worker at every
    turn (its body is readable) or never (the client waits for 100 Continue); here it goes to a worker when a slot
    of its address frees, or at its header's deadline (then ``Server.Busy``). At most the connections an address
    may open wait here (``connection_limits``), each holding its header only.
    """

    def __init__(self, dispatch: Callable[[GuardedConnection], None], limits: ConnectionLimits,
                 interval: float = 0.5) -> None:
        self._dispatch, self._limits, self._interval = dispatch, limits, interval
        self._waiting: dict[str, list[GuardedConnection]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread that hands over requests whose deadline passed."""
        self._stopped.clear()
        self._thread = threading.Thread(target=self._sweep, name="soap-waiting-room", daemon=True)
        self._thread.start()

    def park(self, conn: GuardedConnection) -> None:
        """Keep ``conn`` until a slot of its address frees (checked once more here: one may have freed meanwhile)."""
        conn.parked = False
        peer = conn._peer or ""
        with self._lock:
            if self._stopped.is_set():
                conn.close()
                return
            self._waiting.setdefault(peer, []).append(conn)
        if self._limits.has_room(peer):
            self.wake(peer)

    def wake(self, peer: str) -> None:
        """A slot of ``peer`` freed: its longest waiting request goes to a worker (which tries to take the slot)."""
        with self._lock:
            queue = self._waiting.get(peer)
            if not queue:
                return
            conn = queue.pop(0)
            if not queue:
                del self._waiting[peer]
        self._dispatch(conn)

    def close(self) -> None:
        """Stop the thread and close the connections still waiting (the server is stopping)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            left = [conn for queue in self._waiting.values() for conn in queue]
            self._waiting.clear()
        for conn in left:
            conn.close()

    def alive(self) -> bool:
        """True while the thread that hands over late requests runs (the SOAP server's readiness)."""
        return self._thread is not None and self._thread.is_alive()

    def _sweep(self) -> None:
        # A thread of its own, outside the supervisor's tasks: nothing here is expected to raise, and if something
        # does it is said and the sweep goes on (a parked request past its deadline must still get its answer);
        # ``alive`` is part of the SOAP server's readiness.
        while not self._stopped.wait(self._interval):
            now = time.monotonic()
            with self._lock:
                late = [conn for queue in self._waiting.values() for conn in queue if conn.deadline <= now]
                for peer in list(self._waiting):
                    self._waiting[peer] = [conn for conn in self._waiting[peer] if conn.deadline > now]
                    if not self._waiting[peer]:
                        del self._waiting[peer]
            for conn in late:  # the worker answers Server.Busy
                try:
                    self._dispatch(conn)
                except Exception as exc:  # noqa: BLE001 - this one is closed, the others still go to a worker
                    log.error("soap.waiting_room_failed error=%s", describe(exc))
                    conn.close()
