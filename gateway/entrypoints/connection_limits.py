"""How many connections one listener (the SOAP endpoint, the web console, the health listener, a partner's
webhook) keeps open: per peer address and in all.

Every open connection is a file descriptor of the one ``serve`` process, shared with the database, the inbox
watcher, SFTP and the other listeners. Before these bounds, 1,000 TLS connections trickling a header byte by
byte (to SOAP within its 10 s header timeout, to the console at any pace) used up a 1024-descriptor limit:
the inbox watcher failed until the supervisor gave up and ``serve`` exited. A connection over a bound is
closed as it arrives, before its TLS handshake; refusals of an address are logged at the 1st, 10th, 100th ...
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("gateway.connections")
_MAX_PEERS = 10_000  # refusal counts kept (memory bound when addresses are sprayed)


class ConnectionLimits:
    """Open connections of one listener, counted per peer address and in all (thread-safe)."""

    def __init__(self, front: str, per_address: int, total: int, busy_per_address: int | None = None) -> None:
        self.front, self.per_address, self.total = front, max(1, per_address), max(1, total)
        self.busy_per_address = max(1, busy_per_address) if busy_per_address is not None else None
        self._open: dict[str, int] = {}
        self._busy: dict[str, int] = {}
        self._count = 0
        self._refusals: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        return self._count

    def admit(self, peer: str) -> bool:
        """Count a new connection from ``peer``; False (not counted, logged) when it must be closed instead."""
        with self._lock:
            if self._open.get(peer, 0) >= self.per_address:
                reason = "too_many_from_address"
            elif self._count >= self.total:
                reason = "too_many_connections"
            else:
                self._open[peer] = self._open.get(peer, 0) + 1
                self._count += 1
                return True
            if peer not in self._refusals and len(self._refusals) >= _MAX_PEERS:
                self._refusals.pop(next(iter(self._refusals)))
            refusals = self._refusals[peer] = self._refusals.get(peer, 0) + 1
        if _is_power_of_ten(refusals):
            log.warning("%s.connection_refused peer=%s reason=%s refusals=%d open=%d", self.front, peer, reason,
                        refusals, self._count)
        return False

    def release(self, peer: str) -> None:
        """A counted connection of ``peer`` ended."""
        with self._lock:
            left = self._open.get(peer, 0) - 1
            if left < 0:
                return
            if left:
                self._open[peer] = left
            else:
                del self._open[peer]
            self._count -= 1

    def enter(self, peer: str) -> bool:
        """A request of ``peer`` takes a worker; False when the address already has ``busy_per_address`` of them."""
        with self._lock:
            if self.busy_per_address is not None and self._busy.get(peer, 0) >= self.busy_per_address:
                return False
            self._busy[peer] = self._busy.get(peer, 0) + 1
            return True

    def body_waits(self, peer: str) -> int:
        """Requests of ``peer`` that ``enter`` let in and that have not left."""
        with self._lock:
            return self._busy.get(peer, 0)

    def has_room(self, peer: str) -> bool:
        """Whether ``enter`` would let a request of ``peer`` in now."""
        with self._lock:
            return self.busy_per_address is None or self._busy.get(peer, 0) < self.busy_per_address

    def leave(self, peer: str) -> None:
        """A request that ``enter`` let in has ended."""
        with self._lock:
            left = self._busy.get(peer, 0) - 1
            if left > 0:
                self._busy[peer] = left
            else:
                self._busy.pop(peer, None)


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
