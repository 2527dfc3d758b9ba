"""A process-pool initializer that notes which modules its worker holds (imported by the spawned worker)."""

from __future__ import annotations

import os
import sys
from typing import Any

from gateway.services.ingest_store import init_worker


def recording_init(*args: Any) -> None:
    """``init_worker``, after writing the worker's modules (one a line) to ``$GATEWAY_TEST_WORKER_MODULES``."""
    with open(os.environ["GATEWAY_TEST_WORKER_MODULES"], "w", encoding="utf-8") as fh:
        fh.write("\n".join(sorted(sys.modules)))
    init_worker(*args)
