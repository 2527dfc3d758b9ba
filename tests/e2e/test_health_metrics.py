"""Operator's view of a running gateway: /healthz, /readyz and /metrics of one `gateway serve` process,
and its JSON log lines.

One serve process per database is shared by the cases, in file order: up, a known ingest and delivery
(counters checked against the ack), a delivery step that hangs (liveness flips and comes back), the
database taken away (readiness flips and comes back), then every log line parsed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.conftest import PG_URL, ROOT, _pg_schema_url, write_config
from tests.support import wait_for

GATEWAY = [sys.executable, "-m", "gateway.entrypoints.cli"]


@dataclass
class Served:
    base: Path
    url: str  # http://127.0.0.1:<port> of the health listener
    db_url: str
    proc: subprocess.Popen[str]
    stuck: socket.socket  # the "stuck" partner: accepts connections (kernel backlog) and never answers

    @property
    def log(self) -> Path:
        return self.base / "var" / "log" / "gateway.jsonl"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)


def _gateway(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GATEWAY, "--config", str(cfg), *args], capture_output=True, text=True, timeout=120,
                          cwd=cfg.parent)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp(f"health-{request.param}")
    if request.param == "postgresql":
        if not PG_URL:
            pytest.skip("GATEWAY_TEST_PG_URL not set: PostgreSQL run skipped (CI sets it)")
        schemas: Iterator[str] = _pg_schema_url()
        db_url = next(schemas)
    else:
        schemas, db_url = iter(()), f"sqlite:///{base / 'var' / 'gateway.db'}"
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(16)
    cfg = write_config(
        base, db_url,
        health={"listen": "127.0.0.1:0", "stale_seconds": 2},
        logging={"level": "INFO", "format": "json", "file": "var/log/gateway.jsonl"},
        supervisor={"give_up_after": 1000},  # the database taken away must not end the process
        dispatcher={"stuck_seconds": 2},  # a partner's delivery in flight this long makes /healthz stale
        clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"},
                 "slow": {"name": "Slow", "mapping": "demo", "default_partner": "stuck"}},
        partners={"demo-agency": {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
                                  "options": {"path": "var/partners/demo-agency"}},
                  "stuck": {"adapter": "http", "certificate": "var/keys/partners/demo-agency.crt",
                            "options": {"url": f"http://127.0.0.1:{stuck.getsockname()[1]}", "timeout": 120},
                            "retry": {"in_call_attempts": 1}, "sync": {"enabled": False}}},
        routing=[{"partner": "demo-agency", "client": "demo"}, {"partner": "stuck", "client": "slow"}])
    assert _gateway(cfg, "keys", "init").returncode == 0
    up = _gateway(cfg, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    out = open(base / "serve.out", "w")
    proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "serve"], stdout=out, stderr=subprocess.STDOUT,
                            text=True, cwd=base)
    log = base / "var" / "log" / "gateway.jsonl"
    try:
        def listening() -> str | None:
            if proc.poll() is not None:
                raise AssertionError((base / "serve.out").read_text())
            found = re.search(r'"url": "(http://127\.0\.0\.1:\d+)"', log.read_text() if log.exists() else "")
            return found.group(1) if found else None
        url = wait_for("the health listener", listening)
        yield Served(base, url, db_url, proc, stuck)
    finally:
        stuck.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        out.close()
        for _ in schemas:  # drops the PostgreSQL schema
            pass


def _metrics(served: Served) -> dict[str, list[tuple[dict[str, str], float]]]:
    resp = served.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lbl, v in samples.get(name, []) if all(lbl.get(k) == want for k, want in labels.items()))


def _drop(served: Served, client: str) -> Path:
    upload = served.base / "inbox" / client / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "examples" / "demo.csv", upload / "demo.csv.part")
    os.rename(upload / "demo.csv.part", upload / "demo.csv")
    return served.base / "inbox" / client / "ack" / "demo.csv.ack.csv"


def _not_ready(served: Served) -> dict[str, Any] | None:
    resp = served.get("/readyz")
    return resp.json() if resp.status_code == 503 else None


def test_up_is_live_and_ready(served: Served) -> None:
    wait_for("/readyz 200", lambda: served.get("/readyz").status_code == 200)
    ready = served.get("/readyz").json()
    assert ready == {"status": "ready", "problems": []}
    wait_for("/healthz 200", lambda: served.get("/healthz").status_code == 200)
    assert served.get("/nothing").status_code == 404
    samples = _metrics(served)
    assert _value(samples, "gateway_ready") == 1
    assert {lbl["task"] for lbl, _ in samples["gateway_task_seconds_since_step"]} >= {"dispatch", "inbox",
                                                                                    "certificates"}
    left = wait_for("certificates in /metrics", lambda: _metrics(served).get("gateway_certificate_expiry_seconds"))
    days = {(lbl["role"], lbl["name"]): value / 86400 for lbl, value in left}
    assert 800 < days[("signing", "gateway")] <= 825 and 800 < days[("partner", "demo-agency")] <= 825  # keys init


def test_counters_after_a_known_ingest_and_delivery(served: Served) -> None:
    ack = _drop(served, "demo")
    wait_for("the ack", ack.exists)
    with open(ack, encoding="utf-8", newline="") as fh:
        outcomes = [line["outcome"] for line in csv.DictReader(fh, delimiter=";")]
    expected = {o: outcomes.count(o) for o in ("accepted", "held", "rejected")}
    assert all(expected.values()), expected  # the demo file has each outcome

    def delivered() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        samples = _metrics(served)
        done = _value(samples, "gateway_delivery_attempts_total", partner="demo-agency") >= 1
        rows = {o: _value(samples, "gateway_rows_total", client="demo", outcome=o) for o in expected}
        return samples if done and rows == expected else None
    samples = wait_for("rows and a delivery in /metrics", delivered)
    assert _value(samples, "gateway_submissions_received_total", client="demo") == 1
    assert _value(samples, "gateway_ingest_duration_seconds_count", client="demo") == 1
    assert _value(samples, "gateway_delivery_failures_total", partner="demo-agency") == 0
    assert _value(samples, "gateway_dead_letters_total") == 0
    assert _value(samples, "gateway_submissions_processing") == 0
    assert _value(samples, "gateway_outbox_rows", partner="demo-agency", state="dead") == 0
    assert ("partner", "demo-agency") in {kv for lbl, _ in samples["gateway_partner_sync_lag_seconds"]
                                          for kv in lbl.items()}
    labels = {k for series in samples.values() for lbl, _ in series for k in lbl}
    assert labels <= {"client", "channel", "outcome", "partner", "operation", "state", "task", "status", "le",
                      "role", "name"}


def test_healthz_names_a_hung_task_and_recovers(served: Served) -> None:
    wait_for("/healthz 200", lambda: served.get("/healthz").status_code == 200)
    _drop(served, "slow")  # its batch goes to the partner that never answers: its delivery hangs

    def stale() -> dict[str, Any] | None:
        resp = served.get("/healthz")
        return resp.json() if resp.status_code == 503 else None
    doc = wait_for("/healthz 503", stale)
    # the partner's delivery is named; the dispatch task itself goes on stepping for the other partners
    assert doc["status"] == "stale" and list(doc["stale"]) == ["dispatch:stuck"], doc
    samples = _metrics(served)
    assert _value(samples, "gateway_outbox_rows", partner="stuck", state="leased") == 1
    # the delivery in flight is a partner's, not a task's: the tasks' gauge (alerted at 5 minutes) does not
    # carry it, the deliveries' gauge (alerted at dispatcher.stuck_seconds) does
    assert _value(samples, "gateway_delivery_in_flight_seconds", partner="stuck") > 2
    assert _value(samples, "gateway_task_seconds_since_step", task="dispatch") < 2
    assert not [lbl for lbl, _ in samples["gateway_task_seconds_since_step"] if lbl["task"].startswith("dispatch:")]

    served.stuck.close()  # the waiting connection is reset: the step ends with a failure, retried later
    wait_for("/healthz 200 again", lambda: served.get("/healthz").status_code == 200)
    assert _value(_metrics(served), "gateway_delivery_failures_total", partner="stuck") >= 1


def test_readyz_follows_the_database(served: Served) -> None:
    wait_for("/readyz 200", lambda: served.get("/readyz").status_code == 200)
    if served.db_url.startswith("sqlite"):
        db = Path(served.db_url.removeprefix("sqlite:///"))
        away = db.with_name("gateway.db.away")
        os.rename(db, away)
        try:
            doc = wait_for("/readyz 503", lambda: _not_ready(served))
        finally:
            os.rename(away, db)
    else:
        assert PG_URL
        schema = re.search(r"search_path%3D(\w+)", served.db_url)
        assert schema
        admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with admin.begin() as conn:
                conn.execute(text(f'ALTER SCHEMA "{schema.group(1)}" RENAME TO "{schema.group(1)}_away"'))
            try:
                doc = wait_for("/readyz 503", lambda: _not_ready(served))
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'ALTER SCHEMA "{schema.group(1)}_away" RENAME TO "{schema.group(1)}"'))
        finally:
            admin.dispose()
    assert doc["status"] == "not_ready" and any(p.startswith("database") for p in doc["problems"]), doc
    wait_for("/readyz 200 again", lambda: served.get("/readyz").status_code == 200)
    assert served.get("/healthz").status_code == 200 and served.proc.poll() is None


def test_log_lines_are_json_events(served: Served) -> None:
    lines = served.log.read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]
    assert docs and all({"ts", "level", "logger", "event"} <= d.keys() for d in docs)
    done = [d for d in docs if d["event"] == "ingest.done"]
    assert len(done) == 2 and all(isinstance(d["rows"], int) and d["rows"] > 0 for d in done)
    assert not [d for d in docs if d["event"] == "partner_sync.done" and d["level"] == "INFO"
                and not any(k in d for k in ("applied", "duplicate"))]
