"""One harness per adapter: its simulator on a real loopback transport and the partner config for it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from adapters.simulators.agency import STATUS_MAP, Agency, Fault
from adapters.simulators.files import FolderAgency, load_partner_keys
from adapters.simulators.email_sim import EmailAgencySimulator
from adapters.simulators.http_sim import HttpAgencySimulator
from adapters.simulators.sftp_sim import SftpAgencySimulator
from adapters.simulators.soap_sim import SoapAgencySimulator
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.domain.lifecycle import State
from gateway.errors import DeliveryError
from gateway.services.dispatch import Dispatcher
from gateway.services.keys import init_keys
from gateway.store import claims as claim_store
from gateway.store.db import read_tx
from gateway.services.ingest import ingest_file
from tests.conftest import ROOT, write_config
from tests.support import Clock

PARTNER = "sim-agency"
CERT = "var/keys/partners/sim-agency.crt"


class Harness:
    """A running simulator; ``faults`` names the transport faults it can produce."""

    alias = ""
    faults: tuple[Fault, ...] = ()
    operations = False  # takes per-claim operations (cancel, payments, ...)

    def __init__(self, base: Path) -> None:
        self.base = base
        self.agency = Agency(PARTNER)

    def partner(self) -> dict[str, Any]:
        return {"adapter": self.alias, "certificate": CERT, "options": self.options(), "status_map": STATUS_MAP,
                "retry": {"in_call_attempts": 3, "in_call_wait_seconds": 0.01, "in_call_wait_max_seconds": 0.05}}

    def options(self) -> dict[str, Any]:
        raise NotImplementedError

    def start(self) -> None:
        """Start after keys exist (file agencies decrypt with the partner key)."""

    def pump(self) -> None:
        """Let a file-based agency pick up what arrived and write its status files."""

    def stop(self) -> None:
        pass

    def duplicate_arrivals(self) -> dict[str, int]:
        """Files that reached the partner's folder more than once (the agency folds them; must be empty)."""
        return {}


class DirectoryHarness(Harness):
    alias = "directory"

    def options(self) -> dict[str, Any]:
        return {"path": "var/partners/sim-agency"}

    def start(self) -> None:
        keys = self.base / "var/keys/partners"
        cert, key = load_partner_keys(keys / "sim-agency.crt", keys / "sim-agency.key")
        self.folder = FolderAgency(self.agency, self.base / "var/partners/sim-agency", cert, key, PARTNER)

    def pump(self) -> None:
        self.folder.scan()


class HttpHarness(Harness):
    alias = "http"
    faults = (Fault.ERROR_500, Fault.ERROR_503, Fault.RATE_LIMITED, Fault.TIMEOUT, Fault.DROP, Fault.LOSE_ANSWER,
              Fault.REFUSE)
    operations = True

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.sim = HttpAgencySimulator(self.agency).start()
        self.agency.faults.hang_seconds = 1.0

    def options(self) -> dict[str, Any]:
        return {"url": self.sim.url, "timeout": 0.5}

    def stop(self) -> None:
        self.sim.stop()


class SoapHarness(HttpHarness):
    alias = "soap"

    def __init__(self, base: Path) -> None:
        Harness.__init__(self, base)
        self.sim = SoapAgencySimulator(self.agency).start()
        self.agency.faults.hang_seconds = 1.0

    def options(self) -> dict[str, Any]:
        return {"wsdl": self.sim.wsdl_url, "timeout": 0.5}


class SftpHarness(DirectoryHarness):
    alias = "sftp"
    faults = (Fault.ERROR_500, Fault.ERROR_503, Fault.TIMEOUT, Fault.DROP, Fault.LOSE_ANSWER, Fault.REFUSE)
    move_away = False

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        client = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = base / "sftp-client-key"
        self.client_key.write_bytes(client.export_private_key())
        self.client_key.chmod(0o600)
        self.sim = SftpAgencySimulator(self.agency, base / "var/partners/sim-agency",
                                       client.export_public_key().decode(), move_away=self.move_away).start()
        self.agency.faults.hang_seconds = 1.5

    def options(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.sim.port, "username": "gateway", "client_key": str(self.client_key),
                "host_key": self.sim.host_key_line, "timeout": 1.0}

    def stop(self) -> None:
        self.sim.stop()

    def duplicate_arrivals(self) -> dict[str, int]:
        return self.sim.duplicate_arrivals()


class MovingSftpHarness(SftpHarness):
    """An SFTP partner whose inbound processing takes each file into processed/ on arrival."""

    move_away = True


class EmailHarness(Harness):
    alias = "email"
    faults = (Fault.ERROR_500, Fault.ERROR_503, Fault.TIMEOUT, Fault.DROP, Fault.LOSE_ANSWER, Fault.REFUSE)

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.sim = EmailAgencySimulator(self.agency, PARTNER).start()
        self.agency.faults.hang_seconds = 1.5

    def options(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.sim.port, "from": "gateway@gw.example",
                "to": "akten@agency.example", "timeout": 1.0, "status_path": "var/partners/sim-agency-mail/status"}

    def start(self) -> None:
        keys = self.base / "var/keys/partners"
        self.sim.keys = load_partner_keys(keys / "sim-agency.crt", keys / "sim-agency.key")
        # The agency's status reports, as the mail system files them (the folder agency only writes them).
        self.folder = FolderAgency(self.agency, self.base / "var/partners/sim-agency-mail", *self.sim.keys, PARTNER)

    def pump(self) -> None:
        self.folder.write_status()

    def stop(self) -> None:
        self.sim.stop()


HARNESSES: dict[str, type[Harness]] = {"directory": DirectoryHarness, "http": HttpHarness, "sftp": SftpHarness,
                                       "sftp-moving": MovingSftpHarness, "email": EmailHarness, "soap": SoapHarness}


@contextmanager
def running(kind: str, base: Path) -> Iterator[Harness]:
    h = HARNESSES[kind](base)
    try:
        yield h
    finally:
        h.stop()


def make_keys_template(base: Path) -> Path:
    """Key material for the simulated partner made once (RSA key generation dominates set-up), copied per test."""
    path = write_config(base, "sqlite://", partners={PARTNER: {"adapter": "directory", "certificate": CERT,
                                                               "options": {"path": "x"}}})
    init_keys(load_config(path))
    return base / "var" / "keys"


@contextmanager
def gateway_for(sim: Harness, base: Path, db_url: str, keys_template: Path) -> Iterator[App]:
    """A gateway whose client ``demo`` routes to the running simulator, on a test clock, keys copied in."""
    path = write_config(base, db_url, partners={PARTNER: sim.partner()},
                        clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": PARTNER}},
                        routing=[{"partner": PARTNER, "client": "demo"}])
    shutil.copytree(keys_template, base / "var" / "keys", dirs_exist_ok=True)
    sim.start()
    app = build_app(path, migrate=True)
    clock = Clock(app)
    app.now = clock  # type: ignore[method-assign]
    app.lease_now = clock.leases  # type: ignore[method-assign]
    try:
        yield app
    finally:
        app.close()


def deliver_demo_once(app: App) -> None:
    """The demo file ingested and one dispatcher round run against the partner (what a delivery test starts with)."""
    ingest_file(app, ROOT / "examples" / "demo.csv", "demo")
    worker = Dispatcher(app, owner="w")
    assert worker.run_once()
    worker.close()


def deliver_unanswered(app: App) -> Dispatcher:
    """A dispatcher that has run one delivery the partner took but whose answer never came back (an error the
    gateway does not retry): the batch is dead-lettered and its claims ``failed`` while the partner has them.
    Its adapter answers normally again afterwards."""
    worker = Dispatcher(app, owner="w")
    adapter = worker._adapter(PARTNER)
    real = adapter.deliver

    def taken_but_unanswered(batch):  # type: ignore[no-untyped-def]
        real(batch)
        raise DeliveryError("partner: HTTP 400 on the answer", retryable=False)

    adapter.deliver = taken_but_unanswered  # type: ignore[method-assign]
    assert worker.run_once()
    adapter.deliver = real  # type: ignore[method-assign]
    return worker


# -- fixtures shared by the tests that run a gateway against a simulated partner ----------------------------
# Imported by name into a test module (``from tests.contract.harness import gw, keys_template, sim``); ``sim``
# runs the directory and the HTTP partner, or what ``@pytest.mark.parametrize("sim", [...], indirect=True)`` says.

@pytest.fixture(scope="module")
def keys_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keys_template(tmp_path_factory.mktemp("keys-template"))


@pytest.fixture(params=["directory", "http"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with running(request.param, tmp_path) as h:
        yield h


@pytest.fixture
def gw(sim: Harness, tmp_path: Path, db_url: str, keys_template: Path) -> Iterator[App]:
    with gateway_for(sim, tmp_path, db_url, keys_template) as app:
        yield app


def claims_by_state(app: App, client_id: str = "demo") -> dict[State, list[int]]:
    """A client's claim ids by current state, each list in id order."""
    with read_tx(app.engine) as conn:
        ids = sorted(r["id"] for r in claim_store.listing(conn, client_id=client_id))
        states = claim_store.current_states(conn, ids)
    out: dict[State, list[int]] = {}
    for cid in ids:
        out.setdefault(states[cid], []).append(cid)
    return out
