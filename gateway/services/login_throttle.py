"""Failed logins, throttled per username and per address: one instance per process (``App.login_throttle``)
that the SOAP endpoint and the web console both count in, so an address guessing on one is slowed on the
other too, and a login name is one count whichever door it is tried at.

Each failure is counted under the username tried and under the source address. After ``delay_after``
failures the next attempt of that key must wait ``delay_seconds``, doubling with each further failure
(up to ``delay_max_seconds``); after ``block_after`` failures every attempt is refused for
``block_seconds``. An address gets the same treatment at ``address_factor`` times the counts, so one
office behind NAT with several ERP systems is not locked out by one of them mistyping. An attempt that
is refused costs no password hash: that is the point. Failures older than ``window_seconds`` are
forgotten; a success clears its username's count (not its address's).

A login name is no secret (an ERP's is often the client's name), so the username's count alone would let
anyone lock its owner out: ten wrong passwords from anywhere, every 15 minutes. An address where the
username logged in successfully (this process remembers up to ``_MAX_KEYS`` of them) is therefore held only
to the failures of that username *from that address* (and to the address's own count), not to the username's
failures from everywhere; a stranger still faces the username's count.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from gateway.config import SoapLoginThrottle

_MAX_KEYS = 100_000  # memory bound when someone sprays usernames or addresses


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Decides whether a login attempt may be checked at all, and records failures."""

    def __init__(self, cfg: SoapLoginThrottle) -> None:
        self.cfg = cfg
        self._records: dict[str, _Record] = {}
        self._trusted: dict[tuple[str, str | None], None] = {}  # (username, address) that logged in, oldest first
        self._lock = threading.Lock()

    def wait_for(self, *, username: str | None, address: str | None) -> float:
        """Seconds until an attempt of this username from this address may be checked; 0 if now."""
        now = time.monotonic()
        with self._lock:
            waits = [self._wait(self._records.get(f"a:{address}"), now, self.cfg.address_factor)]
            if username is not None:
                waits.append(self._wait(self._records.get(f"p:{address}:{username}"), now, 1))
                if (username, address) not in self._trusted:
                    waits.append(self._wait(self._records.get(f"u:{username}"), now, 1))
        return max(waits)

    def failed(self, *, username: str | None, address: str | None) -> None:
        """Count one failed login under the username, the address, and the two together."""
        now = time.monotonic()
        with self._lock:
            if len(self._records) >= _MAX_KEYS:
                self._prune(now)
            self._count(f"a:{address}", now, self.cfg.address_factor)
            if username is not None:
                self._count(f"u:{username}", now, 1)
                self._count(f"p:{address}:{username}", now, 1)

    def succeeded(self, username: str, address: str | None = None) -> None:
        """A login of ``username`` from ``address`` succeeded: its counts are cleared and the address trusted."""
        with self._lock:
            self._records.pop(f"u:{username}", None)
            self._records.pop(f"p:{address}:{username}", None)
            self._trusted.pop((username, address), None)
            self._trusted[(username, address)] = None  # moved to the newest end
            if len(self._trusted) > _MAX_KEYS:
                self._trusted.pop(next(iter(self._trusted)))

    def _wait(self, rec: _Record | None, now: float, factor: int) -> float:
        if rec is None or now - rec.last > self.cfg.window_seconds and rec.blocked_until <= now:
            return 0.0
        if rec.blocked_until > now:
            return rec.blocked_until - now
        over = rec.failures - self.cfg.delay_after * factor
        if over < 0:
            return 0.0
        delay = min(self.cfg.delay_seconds * math.pow(2, min(over, 60)), self.cfg.delay_max_seconds)
        return max(0.0, rec.last + delay - now)

    def _count(self, key: str, now: float, factor: int) -> None:
        rec = self._records.setdefault(key, _Record())
        if now - rec.last > self.cfg.window_seconds:
            rec.failures = 0
        rec.failures += 1
        rec.last = now
        if rec.failures >= self.cfg.block_after * factor:
            rec.blocked_until = now + self.cfg.block_seconds
            rec.failures = 0  # after the block, the count starts again (and so do the delays)

    def _prune(self, now: float) -> None:
        stale = [k for k, r in self._records.items()
                 if now - r.last > self.cfg.window_seconds and r.blocked_until <= now]
        for k in stale:
            del self._records[k]
        if len(self._records) >= _MAX_KEYS:  # still full: forget the oldest half rather than grow
            for k, _ in sorted(self._records.items(), key=lambda kv: kv[1].last)[: _MAX_KEYS // 2]:
                del self._records[k]
