"""This node's clock against the database's, where several nodes share one (PostgreSQL).

Leases (client ingest, the outbox rows in flight, partner pulls, status files) go by the database server's clock
(``App.lease_now``), so a node whose clock is off neither takes over work another still does nor waits long past
a dead node's lease. Everything else a node times goes by its own clock: the times it records (claim events,
receipts), when its outbox rows are due again (backoffs, a partner's hold), its schedules. NTP keeps these right;
when it stops (a VM resumed from a suspend, a broken time server) nothing said so. ``ClockWatch`` measures the
difference against the database server's clock once a minute (half a round trip is the error), logs it once when
it passes ``max_skew`` (a quarter of the lease, at least 5 s) and once when it is back, and exports it
(``gateway_clock_skew_seconds``, for an alert). Not a readiness problem: were the database server's own clock
wrong, every node would be off by the same and all of them would leave their load balancer.

On SQLite there is one node and no other clock: nothing is measured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine, text

from gateway.config import GatewayConfig
from gateway.episodes import Episodes

log = logging.getLogger("gateway.serve")

CHECK_SECONDS = 60.0


def max_skew(config: GatewayConfig) -> float:
    """The difference from the database's clock that starts to matter: a quarter of the node's lease, at least 5 s
    (leases are renewed far more often than that, so a holder never comes near the end of one by this much)."""
    return max(5.0, config.node.lease_seconds / 4)


def measure_skew(engine: Engine, clock: Callable[[], float] = time.time) -> float | None:
    """This clock minus the database server's, in seconds (None on SQLite)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        before = clock()
        server = float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
        after = clock()
    return (before + after) / 2 - server


class ClockWatch:
    """The supervised check of this node's clock (``step``), and what it found (``skew``)."""

    def __init__(self, engine: Engine, config: GatewayConfig, clock: Callable[[], float] = time.time) -> None:
        self.engine, self.clock, self.limit = engine, clock, max_skew(config)
        self.skew: float | None = None
        self._episodes = Episodes()

    def step(self) -> bool:
        self.skew = skew = measure_skew(self.engine, self.clock)
        if skew is None:
            return False
        if abs(skew) > self.limit:
            if self._episodes.failed("clock", "skew"):
                log.error("node.clock_skew seconds=%+.1f limit=%.0f: this machine's clock differs from the database "
                          "server's; leases go by the database's clock, but the times this node records and its "
                          "retries and schedules go by its own: sync the clock (NTP)", skew, self.limit)
        else:
            lasted = self._episodes.ok("clock")
            if lasted is not None:
                log.info("node.clock_back seconds=%+.1f after=%.0fs", skew, lasted)
        return False
