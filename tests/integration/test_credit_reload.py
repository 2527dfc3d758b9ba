"""A config reload whose clients name a bureau the running gateway lacks is not taken (bureaus are read at
start); a check that breaks off after its pending audit row settles that row as ``failed``. Both databases."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.bureaus.simulators.book import BureauBook
from adapters.bureaus.simulators.http_sim import HttpBureauSimulator
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.entrypoints.config_watch import ClientReloader
from gateway.services import credit
from gateway.services.keys import init_keys
from gateway.store import credit_checks
from gateway.store.db import read_tx
from tests.conftest import write_config
from tests.integration.test_credit import person


def _outcomes(app: App) -> list[str]:
    with read_tx(app.engine) as conn:
        return [r for (r,) in conn.execute(select(credit_checks.credit_checks.c.outcome)
                                           .order_by(credit_checks.credit_checks.c.id))]


def test_reload_naming_a_new_bureau_is_refused_and_checks_go_on(tmp_path: Path, db_url: str,
                                                                caplog: pytest.LogCaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sim = HttpBureauSimulator(BureauBook()).start()
    try:
        one = {"b1": {"adapter": "http_json", "options": {"url": sim.url}}}
        demo = {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"}
        path = write_config(tmp_path, db_url, bureaus=one, clients={"demo": {**demo, "credit": {"bureaus": ["b1"]}}})
        init_keys(load_config(path))
        app = build_app(path, migrate=True)
        try:
            two = {**one, "b2": {"adapter": "http_json", "options": {"url": sim.url}}}
            write_config(tmp_path, db_url, bureaus=two,
                         clients={"demo": {**demo, "name": "Renamed", "credit": {"bureaus": ["b1", "b2"]}}})
            with caplog.at_level(logging.WARNING, logger="gateway.config"):
                assert not ClientReloader(app, None, None).apply(load_config(path))
            assert "config.restart_needed bureaus=b2" in caplog.text
            assert app.config.clients["demo"].name == "Demo"  # all or nothing: nothing of the file taken
            demo_credit = app.config.clients["demo"].credit
            assert demo_credit is not None and demo_credit.bureaus == ["b1"]
            answer = credit.check_credit(app, "demo", person("Erika", "Mustermann"),
                                         interest="contract_initiation", user="alice", channel="cli")
            assert [o.bureau for o in answer.outcomes] == ["b1"] and _outcomes(app) == ["queried"]
            write_config(tmp_path, db_url, bureaus=one,
                         clients={"demo": {**demo, "name": "Renamed", "credit": {"bureaus": ["b1"]}}})
            assert ClientReloader(app, None, None).apply(load_config(path))  # consistent: taken
            assert app.config.clients["demo"].name == "Renamed"

            # a check that breaks off after its pending row (here a bug injected into the policy: no real
            # part fails at that point on demand) leaves the row settled as failed, never pending
            def broken(*_: object) -> None:
                raise RuntimeError("policy bug")
            monkeypatch.setattr(credit, "evaluate", broken)
            with pytest.raises(RuntimeError, match="policy bug"):
                credit.check_credit(app, "demo", person("Max", "Mustermann"), interest="contract_initiation",
                                    user="alice", channel="cli")
            assert _outcomes(app) == ["queried", "failed"]
            assert [r["outcome"] for r in credit.audit_log(app, "demo")] == ["queried", "failed"]
        finally:
            app.close()
    finally:
        sim.stop()
