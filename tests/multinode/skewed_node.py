"""``gateway`` as a node whose clock is off: its ``App.now`` is moved by ``$GATEWAY_TEST_SKEW_SECONDS``.

The machine's own clock is every other test's too, so the node's clock is moved where the gateway reads it. Used by
test_skewed_clock.py: ``python skewed_node.py --config ... serve``."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta

from gateway.bootstrap import App
from gateway.entrypoints.cli import main


def _skew() -> None:
    offset = timedelta(seconds=float(os.environ["GATEWAY_TEST_SKEW_SECONDS"]))
    true_now = App.now

    def now(self: App) -> datetime:
        return true_now(self) + offset

    App.now = now  # type: ignore[method-assign]


if __name__ == "__main__":
    _skew()
    sys.exit(main())
