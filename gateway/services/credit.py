"""Credit checks across bureaus: ask the client's bureaus at once, judge the answers, keep them sealed.

One call, ``check_credit``, for every channel (CLI, SOAP ``CheckCredit``, the web form):

1. **Guard rails first**, in one write transaction under the client's lock: the client must have credit
   checks configured, state an allowed legitimate interest and name the user; a check beyond
   ``max_checks_per_hour`` is recorded as ``refused`` and refused (``CreditRefused`` code ``rate_limited``).
   A fresh enough answer for the same subject (``cache_seconds``, ``incomplete_cache_seconds``) is given
   again without asking any bureau (outcome ``cached``: no repeated paid query). Otherwise a ``pending``
   row is written, so even a check interrupted mid-way is in the audit log.
2. **The bureaus are asked concurrently** in a shared thread pool, each within its own budget
   (``bureaus.<id>.timeout_seconds``; retryable errors tried again while it lasts, ``attempts``). A bureau
   past its budget is left behind and counted as ``timeout``: the answer comes from those that replied and
   is marked ``incomplete``.
3. **The policy** (``domain/credit.py``) gives the colour and per-bureau reasons; the subject, the outcomes
   and the verdict are sealed under the row's own data key, wrapped by the client's key.

Nothing of the subject reaches a log line or an error text: they carry ids, codes, colours and timings.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Connection, RowMapping, select, update

from adapters.bureaus import BureauError, CreditBureau, load_bureau
from gateway import metrics
from gateway.bootstrap import App
from gateway.config import BureauConfig, ClientCreditConfig
from gateway.crypto import envelope
from gateway.domain.credit import BureauOutcome, Subject, Verdict, evaluate
from gateway.errors import GatewayError, KeyStoreError, NotFound
from gateway.faults import describe
from gateway.store import credit_checks as store
from gateway.store import keys_store
from gateway.store.db import read_tx, write_tx
from gateway.store.sql import dumps, loads

log = logging.getLogger("gateway.credit")
CHANNELS = ("cli", "soap", "web")
ERASED_KEY = store.ERASED_KEY


class CreditRefused(GatewayError):
    """A check that is not made: ``code`` is ``not_enabled``, ``interest``, ``user``, ``subject`` or
    ``rate_limited``; ``fields`` names the subject's missing fields (code ``subject``)."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None) -> None:
        self.code, self.fields = code, fields or []
        super().__init__(message)


@dataclass(frozen=True)
class CreditAnswer:
    """A check's answer as every channel shows it."""

    check_id: int
    colour: str
    incomplete: bool
    cached: bool  # given again from check ``source_check_id`` without asking a bureau
    source_check_id: int | None
    checked_at: datetime  # when the bureaus were asked
    interest: str
    requested_by: str
    subject: Subject | None  # None when its key was destroyed (erased)
    verdict: Verdict | None
    outcomes: list[BureauOutcome]


class _Sealed(msgspec.Struct, frozen=True):
    subject: Subject
    outcomes: list[BureauOutcome]
    verdict: Verdict


# -- the bureaus ---------------------------------------------------------------------------------------------

_POOL_LOCK = threading.Lock()
_EXECUTOR: ThreadPoolExecutor | None = None
_ADAPTERS: dict[int, dict[str, "_Bureau"]] = {}  # id(App) -> bureau id -> its adapter and bound


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _POOL_LOCK:
        if _EXECUTOR is None:
            # shared by all checks; one bureau holds at most its max_in_flight threads, each no longer than
            # its budget (the adapters stop at the deadline), so a slow bureau cannot take the whole pool
            _EXECUTOR = ThreadPoolExecutor(max_workers=64, thread_name_prefix="credit")
        return _EXECUTOR


class _Bureau:
    """An app's adapter for one bureau and the bound on its calls in flight."""

    def __init__(self, fingerprint: str, adapter: CreditBureau, max_in_flight: int) -> None:
        self.fingerprint, self.adapter = fingerprint, adapter
        self.slots = threading.BoundedSemaphore(max_in_flight)


def _close_all(adapters: dict[str, _Bureau]) -> None:
    for bureau in adapters.values():
        bureau.adapter.close()


def _forget(key: int) -> None:
    with _POOL_LOCK:
        adapters = _ADAPTERS.pop(key, {})
    _close_all(adapters)


def _bureau(app: App, bureau_id: str, cfg: BureauConfig) -> _Bureau:
    """The app's adapter for a bureau, built once per configuration (kept while the app lives)."""
    fingerprint = repr(cfg)
    with _POOL_LOCK:
        adapters = _ADAPTERS.get(id(app))
        if adapters is None:
            adapters = _ADAPTERS[id(app)] = {}
            weakref.finalize(app, _forget, id(app))
        known = adapters.get(bureau_id)
        if known is not None and known.fingerprint == fingerprint:
            return known
        adapter = load_bureau(cfg.adapter, bureau_id, cfg.options, cfg.timeout_seconds,
                              max_answer_bytes=cfg.max_answer_bytes)
        adapters[bureau_id] = _Bureau(fingerprint, adapter, cfg.max_in_flight)
    if known is not None:  # its configuration changed: its connections would otherwise linger until GC
        known.adapter.close()
    return adapters[bureau_id]


def _ask(app: App, bureau_id: str, cfg: BureauConfig, subject: Subject, purpose: str,
         started: float) -> BureauOutcome:
    """One bureau within its budget from ``started`` (when the check queued it): retryable errors tried
    again while time and attempts last. Nothing is sent once the budget is gone (the check has answered
    without this bureau), nor beyond the bureau's calls in flight (``busy``, at once)."""
    deadline = started + cfg.timeout_seconds

    def late(status: str, error: str) -> BureauOutcome:
        return BureauOutcome(bureau=bureau_id, status=status, error=error,
                             elapsed_ms=int((time.monotonic() - started) * 1000))

    if time.monotonic() >= deadline - 0.05:
        return late("timeout", "timeout: not asked, no worker free within the budget")
    error: BureauError | None = None
    try:
        bureau = _bureau(app, bureau_id, cfg)
        if not bureau.slots.acquire(blocking=False):
            return late("error", f"busy: {cfg.max_in_flight} calls to this bureau already in flight")
        try:
            for _ in range(cfg.attempts):
                try:
                    result = bureau.adapter.check(subject, purpose=purpose, deadline=deadline)
                    return BureauOutcome(bureau=bureau_id, status="answered", result=result,
                                         elapsed_ms=int((time.monotonic() - started) * 1000))
                except BureauError as exc:
                    error = exc
                    if not exc.retryable or time.monotonic() >= deadline - 0.05:
                        break
        finally:
            bureau.slots.release()
    except Exception as exc:  # noqa: BLE001 - an adapter's bug is this bureau's error, not the check's
        return late("error", describe(exc))
    assert error is not None
    return late("timeout" if error.code == "timeout" else "error", f"{error.code}: {error}")


def ask_bureaus(app: App, bureau_ids: list[str], subject: Subject, purpose: str) -> list[BureauOutcome]:
    """Every bureau at once; each one's outcome within its own budget (a late one is a ``timeout``)."""
    started = time.monotonic()
    pool = _executor()
    jobs: list[tuple[str, BureauConfig, Future[BureauOutcome]]] = []
    for bid in bureau_ids:
        cfg = app.config.bureaus[bid]
        jobs.append((bid, cfg, pool.submit(_ask, app, bid, cfg, subject, purpose, started)))
    out = []
    for bid, cfg, future in jobs:
        # a little slack over the bureau's own timeout, for the thread to hand its answer over
        left = started + cfg.timeout_seconds + 0.1 - time.monotonic()
        try:
            out.append(future.result(timeout=max(0.0, left)))
        except FutureTimeout:
            # not started yet: it never will (no query sent after the check answered); started: the adapter
            # stops at the bureau's deadline by itself
            future.cancel()
            out.append(BureauOutcome(bureau=bid, status="timeout", error="timeout: no answer within the budget",
                                     elapsed_ms=int((time.monotonic() - started) * 1000)))
    return out


# -- sealing -------------------------------------------------------------------------------------------------

def _aad(client_id: str, check_id: int) -> bytes:
    return f"credit:{client_id}\x1f{check_id}".encode()


def _dek_aad(client_id: str, check_id: int) -> bytes:
    return f"credit-dek:{client_id}\x1f{check_id}".encode()


def _seal(conn: Connection, app: App, client_id: str, check_id: int, sealed: _Sealed) -> dict[str, Any]:
    kid, kek = keys_store.active_kek(conn, app.cipher, client_id)
    dek = envelope.new_key()
    return {"key_id": kid, "wrapped_dek": envelope.wrap(kek, dek, _dek_aad(client_id, check_id)),
            "personal": envelope.seal(dek, msgspec.json.encode(sealed), _aad(client_id, check_id))}


def _open(conn: Connection, app: App, row: RowMapping) -> _Sealed | None:
    """A row's sealed content; None when it has none or its client key was destroyed."""
    if row["personal"] is None or row["wrapped_dek"] is None:
        return None
    kc = keys_store.client_keys.c
    wrapped_kek = conn.execute(select(kc.wrapped_kek).where(kc.client_id == row["client_id"],
                                                            kc.key_id == row["key_id"])).scalar()
    if wrapped_kek is None:
        return None
    try:
        kek = app.cipher.client_kek(row["client_id"], row["key_id"], bytes(wrapped_kek))
        dek = envelope.unwrap(kek, bytes(row["wrapped_dek"]), _dek_aad(row["client_id"], row["id"]))
        plain = envelope.open_sealed(dek, bytes(row["personal"]), _aad(row["client_id"], row["id"]))
    except KeyStoreError:
        raise KeyStoreError(f"credit check {row['id']}: its sealed answer does not open") from None
    return msgspec.json.decode(plain, type=_Sealed)


# -- the use case --------------------------------------------------------------------------------------------

def client_credit(app: App, client_id: str) -> ClientCreditConfig:
    """The client's credit settings; CreditRefused ``not_enabled`` when it has none."""
    credit = app.config.client(client_id).credit
    if credit is None:
        raise CreditRefused("not_enabled", f"credit checks are not enabled for client {client_id}")
    return credit


def _bureau_summary(outcomes: list[BureauOutcome]) -> str:
    return dumps([{"bureau": o.bureau, "status": o.status, "error": (o.error or "").split(":")[0] or None,
                   "elapsed_ms": o.elapsed_ms} for o in outcomes])


def check_credit(app: App, client_id: str, subject: Subject, *, interest: str, user: str,
                 channel: str) -> CreditAnswer:
    """Check ``subject`` for ``client_id`` (see the module docstring for the order of things)."""
    credit = client_credit(app, client_id)
    if interest not in credit.interests:
        raise CreditRefused("interest", f"state a legitimate interest: one of {', '.join(credit.interests)}")
    if not user.strip():
        raise CreditRefused("user", "the user who asks must be named")
    missing = subject.problems()
    if missing:
        raise CreditRefused("subject", f"missing fields: {', '.join(missing)}", missing)
    subject_key = app.cipher.blind_index(subject.identity(), f"credit:{client_id}")
    # the longest a check holds its subject's flight: every bureau's budget plus the hand-over slack
    wait = max((app.config.bureaus[b].timeout_seconds for b in credit.bureaus), default=0.0) + 1.0
    with _single_flight(client_id, subject_key, wait):
        return _check(app, client_id, credit, subject, subject_key, interest=interest, user=user, channel=channel)


# -- single flight -------------------------------------------------------------------------------------------
# Two identical requests at once (a double click, a retried SOAP call) would both miss the cache and both pay.
# In this process the second waits for the first (per client and subject) and then finds its answer in the
# cache; across nodes the cache and the database are the only guard (see docs/credit.md).

_FLIGHTS_LOCK = threading.Lock()
_FLIGHTS: dict[tuple[str, str], tuple[threading.Lock, list[int]]] = {}  # key -> (lock, [holders and waiters])


@contextmanager
def _single_flight(client_id: str, subject_key: str, wait: float) -> Iterator[None]:
    """Hold the (client, subject) flight while checking; a waiter past ``wait`` seconds goes ahead anyway
    (a stuck first check must not stop every later one)."""
    key = (client_id, subject_key)
    with _FLIGHTS_LOCK:
        lock, users = _FLIGHTS.setdefault(key, (threading.Lock(), [0]))
        users[0] += 1
    got = lock.acquire(timeout=wait)
    try:
        yield
    finally:
        if got:
            lock.release()
        with _FLIGHTS_LOCK:
            users[0] -= 1
            if users[0] == 0:
                del _FLIGHTS[key]


def _check(app: App, client_id: str, credit: ClientCreditConfig, subject: Subject, subject_key: str, *,
           interest: str, user: str, channel: str) -> CreditAnswer:
    started = time.monotonic()
    now = app.now()
    name = subject.display_name()
    requested_by = user.strip()[:128]
    base: dict[str, Any] = {"client_id": client_id, "created_at": now, "requested_by": requested_by,
                            "channel": channel, "interest": interest, "subject_key": subject_key,
                            "subject_index": app.cipher.blind_index(name, client_id) if name else None}
    check_id, refused_id, sealed = 0, None, None
    with write_tx(app.engine) as conn:
        store.lock_client(conn, client_id)
        if store.counted_since(conn, client_id, now - timedelta(hours=1)) >= credit.max_checks_per_hour:
            refused_id = store.add(conn, **base, outcome=store.REFUSED)
            source = None
        else:
            source = store.reusable(conn, client_id, subject_key,
                                    now - timedelta(seconds=credit.cache_seconds),
                                    now - timedelta(seconds=credit.incomplete_cache_seconds))
            if source is not None:
                check_id = store.add(conn, **base, outcome=store.CACHED, source_check_id=source["id"],
                                     colour=source["colour"], incomplete=source["incomplete"], answered_at=now)
                sealed = _open(conn, app, source)
            else:
                check_id = store.add(conn, **base, outcome=store.PENDING)
    if refused_id is not None:
        metrics.CREDIT_CHECKS.labels(client_id, channel, store.REFUSED, "none").inc()
        log.warning("credit.refused client=%s check=%d reason=rate_limited limit=%d", client_id, refused_id,
                    credit.max_checks_per_hour)
        raise CreditRefused("rate_limited", f"more than {credit.max_checks_per_hour} credit checks in an hour: "
                                            "try again later")
    if source is not None:
        metrics.CREDIT_CHECKS.labels(client_id, channel, store.CACHED, source["colour"]).inc()
        metrics.CREDIT_CACHE_HITS.labels(client_id).inc()
        log.info("credit.check client=%s check=%d channel=%s outcome=cached source=%d colour=%s", client_id,
                 check_id, channel, source["id"], source["colour"])
        return CreditAnswer(check_id=check_id, colour=source["colour"], incomplete=bool(source["incomplete"]),
                            cached=True, source_check_id=source["id"], checked_at=source["created_at"],
                            interest=interest, requested_by=requested_by,
                            subject=sealed.subject if sealed else None, verdict=sealed.verdict if sealed else None,
                            outcomes=sealed.outcomes if sealed else [])
    settled = False
    try:
        outcomes = ask_bureaus(app, credit.bureaus, subject, interest)
        verdict = evaluate(credit.policy, outcomes)
        with write_tx(app.engine) as conn:
            store.settle(conn, check_id, outcome=store.QUERIED, colour=verdict.colour,
                         incomplete=verdict.incomplete, bureaus=_bureau_summary(outcomes), answered_at=app.now(),
                         **_seal(conn, app, client_id, check_id, _Sealed(subject, outcomes, verdict)))
        settled = True
    finally:
        if not settled:  # a row never stays pending: whatever failed, the audit log says so
            _settle_failed(app, client_id, channel, check_id)
    _count_queried(client_id, channel, outcomes, verdict)
    log.info("credit.check client=%s check=%d channel=%s outcome=queried colour=%s incomplete=%s bureaus=%s ms=%d",
             client_id, check_id, channel, verdict.colour, verdict.incomplete,
             ",".join(f"{o.bureau}:{o.status}" for o in outcomes), int((time.monotonic() - started) * 1000))
    return CreditAnswer(check_id=check_id, colour=verdict.colour, incomplete=verdict.incomplete, cached=False,
                        source_check_id=None, checked_at=now, interest=interest,
                        requested_by=requested_by, subject=subject, verdict=verdict, outcomes=outcomes)


def _settle_failed(app: App, client_id: str, channel: str, check_id: int) -> None:
    try:
        with write_tx(app.engine) as conn:
            store.settle(conn, check_id, outcome=store.FAILED, answered_at=app.now())
    except Exception as exc:  # noqa: BLE001 - the original error is the one to raise; this one is logged
        log.error("credit.settle_failed client=%s check=%d error=%s", client_id, check_id, describe(exc))
    metrics.CREDIT_CHECKS.labels(client_id, channel, store.FAILED, "none").inc()
    log.error("credit.check client=%s check=%d channel=%s outcome=failed", client_id, check_id, channel)


def _count_queried(client_id: str, channel: str, outcomes: list[BureauOutcome], verdict: Verdict) -> None:
    """The check and each bureau's result: its colour, or the kind of its failure (never its text)."""
    metrics.CREDIT_CHECKS.labels(client_id, channel, store.QUERIED, verdict.colour).inc()
    for outcome, judged in zip(outcomes, verdict.bureaus):
        if judged.colour is not None:
            result = judged.colour
        else:
            kind = "timeout" if outcome.status == "timeout" else (outcome.error or "").split(":", 1)[0]
            result = kind if kind in metrics.BUREAU_ERROR_KINDS else "other"
        metrics.CREDIT_BUREAU_QUERIES.labels(outcome.bureau, result).inc()


def get_check(app: App, client_id: str, check_id: int) -> CreditAnswer:
    """One of the client's checks with its answer (a cached one shows its source's); NotFound otherwise."""
    with read_tx(app.engine) as conn:
        row = store.get(conn, client_id, check_id)
        if row is None or row["outcome"] not in (store.QUERIED, store.CACHED):
            raise NotFound(f"no credit check {check_id} for client {client_id}")
        source = store.get(conn, client_id, row["source_check_id"]) if row["source_check_id"] else row
        sealed = _open(conn, app, source) if source is not None else None
    return CreditAnswer(check_id=row["id"], colour=row["colour"], incomplete=bool(row["incomplete"]),
                        cached=row["outcome"] == store.CACHED, source_check_id=row["source_check_id"],
                        checked_at=(source or row)["created_at"], interest=row["interest"],
                        requested_by=row["requested_by"], subject=sealed.subject if sealed else None,
                        verdict=sealed.verdict if sealed else None, outcomes=sealed.outcomes if sealed else [])


@dataclass(frozen=True)
class CheckSummary:
    check_id: int
    created_at: datetime
    colour: str
    incomplete: bool
    interest: str
    requested_by: str
    cached: bool


def checks_for_claim(app: App, client_id: str, claim_id: int) -> list[CheckSummary]:
    """The client's credit checks of this claim's debtor (by the blind name index), newest first."""
    kc = keys_store.claim_keys.c
    with read_tx(app.engine) as conn:
        token = conn.execute(select(kc.name_index).where(kc.claim_id == claim_id,
                                                         kc.client_id == client_id)).scalar()
        if token is None:
            return []
        rows = store.by_subject_index(conn, client_id, str(token))
    return [CheckSummary(check_id=r["id"], created_at=r["created_at"], colour=r["colour"],
                         incomplete=bool(r["incomplete"]), interest=r["interest"], requested_by=r["requested_by"],
                         cached=r["outcome"] == store.CACHED) for r in rows]


AUDIT_COLUMNS = ("check_id", "created_at", "requested_by", "channel", "interest", "outcome", "source_check_id",
                 "colour", "incomplete", "bureaus", "subject")


def audit_log(app: App, client_id: str, since: datetime | None = None,
              until: datetime | None = None) -> list[dict[str, Any]]:
    """The client's audit log: every request, oldest first, with the subject's name for the client itself
    (``[erased]`` when its key is gone; empty for refused requests, whose subject is not kept)."""
    app.config.client(client_id)  # an unknown client is an error, not an empty log
    out = []
    with read_tx(app.engine) as conn:
        names: dict[int, str] = {}
        for r in store.audit(conn, client_id, since, until):
            source = r["source_check_id"] or r["id"]
            if source not in names and r["outcome"] in (store.QUERIED, store.CACHED):
                src = r if source == r["id"] else store.get(conn, client_id, source)
                sealed = _open(conn, app, src) if src is not None else None
                names[source] = sealed.subject.display_name() if sealed else envelope.ERASED_NAME
            out.append({"check_id": r["id"], "created_at": r["created_at"].isoformat(),
                        "requested_by": r["requested_by"], "channel": r["channel"], "interest": r["interest"],
                        "outcome": r["outcome"], "source_check_id": r["source_check_id"], "colour": r["colour"],
                        "incomplete": r["incomplete"], "bureaus": loads(r["bureaus"]),
                        "subject": names.get(source, "")})
    return out


def erase_checks(app: App, client_id: str, *, check_id: int | None = None, subject_name: str | None = None) -> int:
    """Erase the subject and answers of one check, or of every check of a subject's name, at one client.

    The sealed value, its key and the blind indexes go; the audit row stays (who asked, when, why, the
    colour): accountability outlives the data. A cached row repeating an erased check then shows
    ``[erased]`` too. Returns how many rows held data.
    """
    app.config.client(client_id)
    if check_id is not None:
        chosen: dict[str, Any] = {"check_id": check_id}
    elif subject_name and subject_name.strip():
        chosen = {"subject_index": app.cipher.blind_index(subject_name, client_id)}
    else:
        raise CreditRefused("subject", "name a check id or the subject's name")
    with write_tx(app.engine) as conn:
        n = store.erase(conn, client_id, **chosen)
    log.info("credit.erased client=%s checks=%d", client_id, n)
    return n


# -- key rotation (services/key_rotation.py calls these) ------------------------------------------------------

def rewrap_checks(app: App, conn: Connection, client_id: str, kid: str) -> int:
    """Re-wrap the client's check keys under its client key ``kid``, before the older client keys are destroyed."""
    c, kc = store.credit_checks.c, keys_store.client_keys.c
    rows = conn.execute(select(c.id, c.key_id, c.wrapped_dek, kc.wrapped_kek)
                        .join(keys_store.client_keys, (kc.client_id == c.client_id) & (kc.key_id == c.key_id))
                        .where(c.client_id == client_id, c.wrapped_dek.is_not(None), c.key_id != kid,
                               kc.wrapped_kek.is_not(None))).all()
    if not rows:
        return 0
    new = conn.execute(select(kc.wrapped_kek).where(kc.client_id == client_id, kc.key_id == kid)).scalar_one()
    new_kek = app.cipher.client_kek(client_id, kid, bytes(new))
    for check_id, old_kid, wrapped, old_wrapped in rows:
        aad = _dek_aad(client_id, check_id)
        dek = envelope.unwrap(app.cipher.client_kek(client_id, old_kid, bytes(old_wrapped)), bytes(wrapped), aad)
        conn.execute(update(store.credit_checks).where(c.id == check_id)
                     .values(key_id=kid, wrapped_dek=envelope.wrap(new_kek, dek, aad)))
    return len(rows)


def reindex_checks(app: App, conn: Connection) -> int:
    """Compute every readable check's blind indexes again under the current index key (index key rotation)."""
    c, n = store.credit_checks.c, 0
    for row in list(conn.execute(select(store.credit_checks).where(c.personal.is_not(None))).mappings()):
        sealed = _open(conn, app, row)
        if sealed is None:
            continue
        name, client_id = sealed.subject.display_name(), row["client_id"]
        conn.execute(update(store.credit_checks).where(c.id == row["id"]).values(
            subject_key=app.cipher.blind_index(sealed.subject.identity(), f"credit:{client_id}"),
            subject_index=app.cipher.blind_index(name, client_id) if name else None))
        n += 1
    return n
