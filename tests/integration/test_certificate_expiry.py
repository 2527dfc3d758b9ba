"""Certificates that run out are said weeks before (services/cert_expiry.py): the log once per certificate and
state, and ``gateway_certificate_expiry_seconds`` for the alert. Real certificate files, as ``keys init`` and a
partner's renewal write them."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import generate_latest

from gateway.bootstrap import App
from gateway.crypto.certs import load_private_key, new_rsa_key, self_signed_cert, write_cert
from gateway.metrics import BacklogCollector, Exposition
from gateway.services.cert_expiry import CertificateWatch

DAY = 86400.0


def _partner_cert(app: App, days: int) -> None:
    path = app.config.path(app.config.partners["demo-agency"].certificate)
    key = load_private_key(path.with_suffix(".key")) if path.with_suffix(".key").exists() else new_rsa_key(2048)
    write_cert(path, self_signed_cert(key, "demo-agency", days=days, usage="encryption"))


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(event)]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_certificate_running_out_is_said_once_then_its_end_then_its_renewal(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.serve")
    offset = [0.0]
    watch = CertificateWatch(app, clock=lambda: time.time() + offset[0])
    watch.step()
    assert watch.remaining[("signing", "gateway")] > 700 * DAY  # keys init: 825 days
    assert watch.remaining[("partner", "demo-agency")] > 700 * DAY
    assert not _lines(caplog, "certs.")

    _partner_cert(app, days=10)  # the partner sent a certificate that runs out soon
    watch.step()
    watch.step()
    assert 9 * DAY < watch.remaining[("partner", "demo-agency")] <= 10 * DAY
    [said] = _lines(caplog, "certs.expiring")
    assert "role=partner name=demo-agency" in said and "days=9" in said

    offset[0] = 11 * DAY  # and nobody renewed it
    watch.step()
    watch.step()
    assert watch.remaining[("partner", "demo-agency")] < 0
    [expired] = _lines(caplog, "certs.expired")
    assert "role=partner name=demo-agency" in expired

    _partner_cert(app, days=400)
    watch.step()
    assert len(_lines(caplog, "certs.renewed")) == 1 and len(_lines(caplog, "certs.expiring")) == 1
    exposition = generate_latest(Exposition(BacklogCollector(lambda: None, dict, lambda: True,
                                                             certificates=lambda: watch.remaining))).decode()
    [line] = [x for x in exposition.splitlines()
              if x.startswith('gateway_certificate_expiry_seconds{name="demo-agency",role="partner"}')]
    assert 388 * DAY < float(line.split()[-1]) <= 389 * DAY  # 400 days from now, 11 days on


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_missing_or_broken_file_has_no_figure_and_stops_nothing(app: App) -> None:
    path = app.config.path(app.config.partners["demo-agency"].certificate)
    path.write_text("not a certificate")
    watch = CertificateWatch(app)
    watch.step()
    assert ("partner", "demo-agency") not in watch.remaining and ("signing", "gateway") in watch.remaining
    path.unlink()
    watch.step()
    assert ("partner", "demo-agency") not in watch.remaining
