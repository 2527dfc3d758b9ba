"""Demo only: simulated credit bureaus ``gateway serve`` runs in-process when ``bureaus.<id>.simulator.enabled``.

Each answers from the book of fictitious people (``adapters/bureaus/simulators/book.py``) on the port of
the bureau's configured ``url`` (``http_json``) or ``wsdl`` (``soap``), so ``make run`` shows a credit
check without a real bureau.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from adapters.bureaus.simulators.book import BureauBook
from adapters.bureaus.simulators.http_sim import HttpBureauSimulator
from adapters.bureaus.simulators.soap_sim import SoapBureauSimulator
from gateway.bootstrap import App

log = logging.getLogger("gateway.demo")


def start_bureau_simulators(app: App) -> list[HttpBureauSimulator]:
    """Start a simulator for every bureau whose config enables one; a port in use is logged, not fatal."""
    started: list[HttpBureauSimulator] = []
    for bid, b in app.config.bureaus.items():
        if not b.simulator.enabled:
            continue
        url = urlsplit(str(b.options.get("url") or b.options.get("wsdl") or ""))
        cls = SoapBureauSimulator if b.adapter == "soap" else HttpBureauSimulator
        try:
            started.append(cls(BureauBook(), url.hostname or "127.0.0.1", url.port or 80).start())
        except OSError as exc:
            log.error("demo.bureau_simulator_failed bureau=%s error=%s", bid, exc.strerror)
            continue
        log.info("demo.bureau_simulator bureau=%s adapter=%s port=%s", bid, b.adapter, url.port)
    return started
