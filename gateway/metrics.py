"""The gateway's Prometheus metrics: every metric object in one place, in one registry of its own.

The registry is this module's, not prometheus_client's global one: importing a library that
registers into the default registry cannot add to or clash with our exposition, and tests read the
values from ``REGISTRY``. Counters count what this process did (sum them over nodes); the gauges read
from the database at scrape time (``BacklogCollector``) describe the shared state (take the max over
nodes, not the sum).

Labels are bounded and never carry debtor data: client id, channel, partner id, bureau id, outcome,
colour, error kind, operation, state, task, HTTP status. Nothing a client typed (a reference, a name, a file name) is a label.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # memory, CPU, open files of this process (cheap: /proc)

# -- intake ---------------------------------------------------------------------------------------
SUBMISSIONS_RECEIVED = Counter("gateway_submissions_received", "Files and SOAP submissions taken in",
                               ["client", "channel"], registry=REGISTRY)
ROWS = Counter("gateway_rows", "Rows (file rows, SOAP claims) by outcome", ["client", "channel", "outcome"],
               registry=REGISTRY)
INGEST_SECONDS = Histogram("gateway_ingest_duration_seconds", "Wall time to ingest one file", ["client"],
                           buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
                           registry=REGISTRY)

# -- delivery -------------------------------------------------------------------------------------
DELIVERY_ATTEMPTS = Counter("gateway_delivery_attempts", "Outbox rows leased and tried",
                            ["partner", "operation"], registry=REGISTRY)
DELIVERY_FAILURES = Counter("gateway_delivery_failures", "Outbox attempts that failed (retried or dead)",
                            ["partner", "operation"], registry=REGISTRY)
DEAD_LETTERS = Counter("gateway_dead_letters", "Outbox rows moved to dead letter", ["partner", "operation"],
                       registry=REGISTRY)
PARTNER_SYNC_ERRORS = Counter("gateway_partner_sync_errors", "Scheduled partner pulls that failed", ["partner"],
                              registry=REGISTRY)

# -- listeners ------------------------------------------------------------------------------------
SFTP_SESSIONS = Counter("gateway_sftp_sessions", "SFTP logins that succeeded", ["client"], registry=REGISTRY)
SFTP_ACTIVE = Gauge("gateway_sftp_sessions_active", "SFTP connections logged in now", registry=REGISTRY)
SFTP_AUTH_FAILURES = Counter("gateway_sftp_auth_failures", "SSH connections that tried to log in and failed",
                             registry=REGISTRY)
SOAP_REQUESTS = Counter("gateway_soap_requests", "SOAP endpoint requests", ["operation", "status"],
                        registry=REGISTRY)
SOAP_SECONDS = Histogram("gateway_soap_request_duration_seconds", "SOAP request latency", ["operation"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)

# -- credit checks --------------------------------------------------------------------------------
CREDIT_CHECKS = Counter("gateway_credit_checks", "Credit check requests by outcome (queried, cached, refused, "
                        "failed) and colour (none: refused, failed)", ["client", "channel", "outcome", "colour"], registry=REGISTRY)
CREDIT_CACHE_HITS = Counter("gateway_credit_cache_hits", "Credit checks answered again from a stored answer "
                            "(no bureau asked, nothing paid)", ["client"], registry=REGISTRY)
CREDIT_BUREAU_QUERIES = Counter("gateway_credit_bureau_queries", "Bureaus asked, by the bureau's result: its colour "
                                "when it answered, else the error kind (timeout, unavailable, refused, "
                                "invalid_answer, other)", ["bureau", "result"], registry=REGISTRY)
BUREAU_ERROR_KINDS = frozenset({"timeout", "unavailable", "refused", "invalid_answer", "too_large", "busy"})

# -- supervision ----------------------------------------------------------------------------------
TASK_FAILURES = Counter("gateway_task_failures", "Failed steps of supervised tasks (each is restarted after a "
                        "backoff) and failed items they contained", ["task"], registry=REGISTRY)


def finished(client: str, channel: str, accepted: int, held: int, rejected: int,
             seconds: float | None = None) -> None:
    """One submission's rows by outcome and, for a file, how long its ingest took."""
    for outcome, n in (("accepted", accepted), ("held", held), ("rejected", rejected)):
        if n:
            ROWS.labels(client, channel, outcome).inc(n)
    if seconds is not None:
        INGEST_SECONDS.labels(client).observe(seconds)


@dataclass
class Backlog:
    """What the database says at scrape time (``services.monitoring.backlog``)."""

    submissions_processing: int = 0
    outbox: dict[tuple[str, str], int] = field(default_factory=dict)  # (partner, state) -> rows
    oldest_pending_seconds: dict[str, float] = field(default_factory=dict)  # partner -> age
    sync_age_seconds: dict[str, float] = field(default_factory=dict)  # partner -> since the last pull
    sync_failing: dict[str, bool] = field(default_factory=dict)  # partner -> the last pull failed
    sync_interval_seconds: dict[str, float] = field(default_factory=dict)  # partner -> schedule


class BacklogCollector:
    """Gauges computed when scraped: the backlog from the database, and the tasks' and readiness state.

    ``backlog`` returns None when the database cannot be read (the scrape still answers, without these).
    """

    def __init__(self, backlog: Callable[[], Backlog | None], tasks: Callable[[], dict[str, float]],
                 ready: Callable[[], bool], deliveries: Callable[[], dict[str, float]] = dict,
                 clock_skew: Callable[[], float | None] = lambda: None,
                 certificates: Callable[[], dict[tuple[str, ...], float]] = dict) -> None:
        self.backlog, self.tasks, self.ready, self.deliveries = backlog, tasks, ready, deliveries
        self.clock_skew, self.certificates = clock_skew, certificates

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("gateway_ready", "1 when /readyz answers 200", value=1 if self.ready() else 0)
        age = GaugeMetricFamily("gateway_task_seconds_since_step", "Seconds since a supervised task last "
                                "finished a step", labels=["task"])
        for task, seconds in sorted(self.tasks().items()):
            age.add_metric([task], seconds)
        yield age
        # Not a task's: a delivery runs in a thread of its own beside the dispatch task, and is stale only past
        # dispatcher.stuck_seconds (600 s), while a task is judged by its interval (an alert at 300 s on the
        # tasks' gauge would call a merely slow partner a hang).
        yield _family("gateway_delivery_in_flight_seconds", "Seconds the partner's outbox row in flight on this node "
                      "has been worked on", ["partner"], {(p,): v for p, v in self.deliveries().items()})
        skew = self.clock_skew()
        if skew is not None:  # several nodes (PostgreSQL) should agree on the time (services/clock.py)
            yield GaugeMetricFamily("gateway_clock_skew_seconds", "This node's clock minus the database server's, "
                                    "measured once a minute", value=skew)
        # services/cert_expiry.py, looked at hourly: negative once a certificate has run out
        yield _family("gateway_certificate_expiry_seconds", "Seconds until the certificate's end of validity, by "
                      "role (signing, tls, partner, partner_ca) and name (gateway or the partner)", ["role", "name"],
                      self.certificates())
        b = self.backlog()
        if b is None:
            return
        yield GaugeMetricFamily("gateway_submissions_processing", "Submissions not finished yet",
                                value=b.submissions_processing)
        yield _family("gateway_outbox_rows", "Outbox rows not done, by partner and state", ["partner", "state"],
                      {k: float(v) for k, v in b.outbox.items()})
        yield _family("gateway_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox row",
                      ["partner"], {(p,): v for p, v in b.oldest_pending_seconds.items()})
        yield _family("gateway_partner_sync_lag_seconds", "Seconds since the partner's last pull ended",
                      ["partner"], {(p,): v for p, v in b.sync_age_seconds.items()})
        yield _family("gateway_partner_sync_failing", "1 when the partner's last pull failed", ["partner"],
                      {(p,): float(v) for p, v in b.sync_failing.items()})
        yield _family("gateway_partner_sync_interval_seconds", "The partner's pull schedule (sync.every_seconds)",
                      ["partner"], {(p,): v for p, v in b.sync_interval_seconds.items()})


def _family(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


class Exposition:
    """The registry plus scrape-time collectors, as one object ``generate_latest`` can read."""

    def __init__(self, *extra: Any) -> None:
        self.extra: Iterable[Any] = extra

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        for collector in self.extra:
            yield from collector.collect()


class SoapMetrics:
    """WSGI middleware: counts and times each request by SOAP operation and HTTP status.

    The operation comes from the SOAPAction header (what SOAP 1.1 clients send, as named in the WSDL)
    and is a label only when it names a known operation: "wsdl" for the WSDL, "other" for the rest.
    """

    def __init__(self, inner: Callable[..., Iterable[bytes]], operations: Iterable[str]) -> None:
        self.inner, self.operations = inner, frozenset(operations)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start = time.monotonic()
        action = str(environ.get("HTTP_SOAPACTION", "")).strip('" ').rsplit("/", 1)[-1].rsplit("#", 1)[-1]
        if environ.get("REQUEST_METHOD") == "GET":
            operation = "wsdl"
        else:
            operation = action if action in self.operations else "other"
        status = ["500"]  # what the server answers when the application raises before answering

        def recording(code: str, headers: Any, *exc_info: Any) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, *exc_info)
        try:
            return self.inner(environ, recording)
        finally:
            SOAP_REQUESTS.labels(operation, status[0]).inc()
            SOAP_SECONDS.labels(operation).observe(time.monotonic() - start)
