"""The shipped alert rules and the JSON log format, without a running gateway."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import yaml

from gateway.entrypoints.logs import JsonFormatter, parse_event
from gateway.metrics import REGISTRY, Backlog, BacklogCollector, Exposition, SoapMetrics
from tests.conftest import ROOT

ALERTS = ROOT / "docs" / "alerts.yml"
EXPECTED = {"GatewayDeadLetters", "GatewayOutboxStuck", "GatewayTaskRestarting", "GatewayTaskStale",
            "GatewayDeliveryStuck", "GatewayPartnerSyncLag", "GatewayPartnerSyncFailing", "GatewayNotReady",
            "GatewayClockSkew", "GatewayCertificateExpiring"}


def _exposed_names() -> set[str]:
    """Every sample name the gateway's /metrics can carry (registry and scrape-time gauges)."""
    full = Backlog(submissions_processing=1, outbox={("p", "pending"): 1}, oldest_pending_seconds={"p": 1.0},
                   sync_age_seconds={"p": 1.0}, sync_failing={"p": True}, sync_interval_seconds={"p": 60.0})
    collector = BacklogCollector(lambda: full, lambda: {"dispatch": 1.0}, lambda: True, lambda: {"p": 1.0},
                                 lambda: 0.5,  # the clock's skew: on PostgreSQL
                                 lambda: {("partner", "p"): 1e6})
    names = {s.name for family in Exposition(collector).collect() for s in family.samples}
    # counters and histograms without any sample yet still have their names
    for family in REGISTRY.collect():
        base = family.name
        names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_count", f"{base}_sum"}
    return names


def test_alert_rules_are_valid_and_use_only_exposed_metrics() -> None:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in rules} == EXPECTED
    exposed = _exposed_names()
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
        used = set(re.findall(r"\bgateway_[a-z_]+", rule["expr"]))
        assert used and used <= exposed, (rule["alert"], used - exposed)
    promtool = shutil.which("promtool")
    if promtool:  # the real checker when it is installed; the checks above otherwise
        check = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr


def test_json_log_line_has_the_event_and_its_fields() -> None:
    record = logging.LogRecord("gateway.supervisor", logging.WARNING, __file__, 1,
                               "supervisor.task_failed task=%s transient=%s error=%s", ("dispatch", "true",
                               "OperationalError: database is locked"), None)
    doc = json.loads(JsonFormatter().format(record))
    assert doc["event"] == "supervisor.task_failed" and doc["level"] == "WARNING"
    assert doc["logger"] == "gateway.supervisor" and doc["ts"].endswith("+00:00")
    assert doc["task"] == "dispatch" and doc["error"] == "OperationalError: database is locked"
    assert parse_event("ingest.done submission=S-1 rows=12 level=x") == {
        "event": "ingest.done", "submission": "S-1", "rows": 12, "level_": "x"}
    assert parse_event("supervisor.gave_up task=t: stopping")["task"] == "t: stopping"


def test_soap_requests_are_counted_by_known_operation_and_status() -> None:
    def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("500 Internal Server Error" if "fault" in environ.get("QUERY_STRING", "") else "200 OK", [])
        return [b"<x/>"]
    app = SoapMetrics(inner, ["SubmitClaims"])

    def count(operation: str, status: str) -> float:
        return REGISTRY.get_sample_value("gateway_soap_requests_total",
                                         {"operation": operation, "status": status}) or 0.0
    before = (count("SubmitClaims", "200"), count("other", "500"), count("wsdl", "200"))
    app({"REQUEST_METHOD": "POST", "HTTP_SOAPACTION": '"SubmitClaims"'}, lambda *a: None)
    app({"REQUEST_METHOD": "POST", "HTTP_SOAPACTION": '"urn:x/Ann Müller"', "QUERY_STRING": "fault"},
        lambda *a: None)  # not an operation: never a label
    app({"REQUEST_METHOD": "GET", "QUERY_STRING": "wsdl"}, lambda *a: None)
    assert (count("SubmitClaims", "200"), count("other", "500"), count("wsdl", "200")) == tuple(
        b + 1 for b in before)
    assert (REGISTRY.get_sample_value("gateway_soap_request_duration_seconds_count",
                                      {"operation": "SubmitClaims"}) or 0) >= 1


def test_a_text_log_line_stays_one_line_whatever_its_values_hold(tmp_path: Any) -> None:
    from gateway.config import load_config
    from gateway.entrypoints.logs import configure_logging
    from tests.conftest import write_config

    cfg = load_config(write_config(tmp_path, f"sqlite:///{tmp_path}/g.db", logging={"file": "var/log/g.log"}))
    root, before = logging.getLogger(), list(logging.getLogger().handlers)
    try:
        configure_logging(cfg, verbose=False, serve=True)
        # a client's file name with a forged line in it, and a library's own multi-line message
        logging.getLogger("gateway.watcher").info("watcher.seen file=%s", "a.csv\n2026-12-01 ERROR gateway forged\r")
        logging.getLogger("psycopg").warning("error ignored terminating <Pipeline>:\nserver closed\tthe connection")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("gateway.supervisor").exception("supervisor.task_failed task=t")
    finally:
        for h in root.handlers[:]:
            if h not in before:
                root.removeHandler(h)
                h.close()
        for h in before:
            if h not in root.handlers:
                root.addHandler(h)
    lines = (tmp_path / "var" / "log" / "g.log").read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith(r"watcher.seen file=a.csv\n2026-12-01 ERROR gateway forged\r")
    assert lines[1].endswith(r"error ignored terminating <Pipeline>:\nserver closed\tthe connection")
    assert lines[2].endswith("supervisor.task_failed task=t")
    assert lines[3] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"  # kept as it is
