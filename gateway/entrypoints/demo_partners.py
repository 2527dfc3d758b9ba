"""Demo only: simulated agencies ``gateway serve`` runs in-process when ``partners.<id>.simulator.enabled``.

A newcomer's ``make run`` then sees claims go all the way to ``in_progress`` and ``closed_paid``
without a real agency. The directory partner gets a folder agency that opens its batches with the
demo partner key and writes status files back; an ``http`` or ``soap`` partner gets the simulated API on
the port of its configured URL (and webhook pushes when the partner has a webhook). Each agency keeps
its books in ``<var>/partners/<id>/agency-state.json``, so a restarted ``serve`` finds the cases, file
numbers and status journal where it left them (one ``serve`` per var folder runs the demo agency).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from adapters.simulators.agency import Agency
from adapters.simulators.files import FolderAgency, load_partner_keys
from adapters.simulators.http_sim import HttpAgencySimulator
from adapters.simulators.soap_sim import SoapAgencySimulator
from gateway.bootstrap import App
from gateway.errors import ConfigError

log = logging.getLogger("gateway.demo")
STATE_FILE = "agency-state.json"


class Stoppable(Protocol):
    def stop(self) -> None: ...


class _Pusher:
    """Pushes new journal entries to the partner's own webhook every second (a pushing agency)."""

    def __init__(self, sim: HttpAgencySimulator, url: str, secret: bytes) -> None:
        self.sim, self.url, self.secret, self._stop = sim, url, secret, threading.Event()
        threading.Thread(target=self._run, name="demo-webhook-push", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.sim.push_webhook(self.url, self.secret)
            except Exception as exc:  # the demo agency keeps trying, like a real one
                log.warning("demo.push_failed error=%s", exc)

    def stop(self) -> None:
        self._stop.set()
        self.sim.stop()


def start_simulators(app: App) -> list[Stoppable]:
    """Start a simulated agency for every partner whose config enables one."""
    from gateway.entrypoints.partner_tasks import webhook_secret
    started: list[Stoppable] = []
    for pid, p in app.config.partners.items():
        if not p.simulator.enabled:
            continue
        agency = Agency(pid, step_seconds=p.simulator.step_seconds,
                        state_path=app.config.var_dir / "partners" / pid / STATE_FILE)
        if p.adapter == "directory":
            cert_path = app.config.path(p.certificate)
            key_path = app.config.path(p.simulator.key) if p.simulator.key else cert_path.with_suffix(".key")
            # A sandbox partner plays the scenario each claim asks for (docs/sandbox.md).
            folder = FolderAgency(agency, Path(app.config.path(str(p.options["path"]))),
                                  *load_partner_keys(cert_path, key_path), pid,
                                  scenarios=p.simulator.scenario if p.sandbox else None)
            folder.start()
            started.append(folder)
        elif p.adapter in ("http", "soap"):
            url = urlsplit(str(p.options.get("url") or p.options.get("wsdl")))
            cls = HttpAgencySimulator if p.adapter == "http" else SoapAgencySimulator
            sim = cls(agency, url.hostname or "127.0.0.1", url.port or 80).start()
            if p.webhook.listen:
                started.append(_Pusher(sim, f"http://{p.webhook.listen}/", webhook_secret(app, pid, p)))
            else:
                started.append(sim)
        else:
            raise ConfigError(f"no demo simulator for adapter {p.adapter!r} (directory, http, soap have one)",
                              file=app.config.source, key=f"partners.{pid}.simulator")
        log.info("demo.simulator partner=%s adapter=%s step_seconds=%s cases=%d journal=%d", pid, p.adapter,
                 p.simulator.step_seconds, len(agency.cases), len(agency.journal))
    return started
