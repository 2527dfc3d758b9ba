"""The agency behind every simulator: file numbers, a status timeline, payments, messages, and faults.

Transports (HTTP, SOAP, SFTP, SMTP, a folder) only translate to this one brain, so every adapter is
tested against the same behaviour. It keeps everything it received so tests can assert that each
claim became exactly one case, however often it was sent. Given a ``state_path`` (the demo agency of
``make run``) it keeps its books in that file and continues from them after a restart.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.base import INSTRUCTION_RECEIVED, INSTRUCTION_REJECTED, PartnerUpdate
from adapters.simulators.agency_state import Books, StoredCase, load_books, save_books
from gateway.domain.sandbox import (ACCEPTED, CANCELLED, COURT, DEFAULT_SCENARIO, INSTALMENTS, PAID, SCENARIOS,
                                    UNCOLLECTIBLE, WORKING)

# The simulated agency's status codes come from the one list the sandbox's scenarios use; the map a gateway
# config uses for them:
STATUS_MAP = {ACCEPTED: "handed_over", WORKING: "in_progress:pre_court", COURT: "in_progress:court_dunning",
              "RATENZAHLUNG": "instalment_plan", PAID: "closed_paid", CANCELLED: "cancelled_by_client",
              "UNEINBRINGLICH": "closed_uncollectible", "UEBERWACHUNG": "in_progress:long_term_monitoring"}


class Fault(str, enum.Enum):
    """What a simulator can be told to do to the next requests."""

    REFUSE = "refuse"  # no listener: connection refused
    ERROR_500 = "500"
    ERROR_503 = "503"
    RATE_LIMITED = "429"  # an HTTP partner's "too many requests" (with ``Faults.retry_after``); others: as 503
    TIMEOUT = "timeout"  # hold the request longer than the client waits
    DROP = "drop"  # close the connection mid-request, nothing processed
    LOSE_ANSWER = "lose_answer"  # process the request, then close without answering


class Faults:
    """A thread-safe queue of faults for the next requests, or an outage until healed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: list[Fault] = []
        self.outage: Fault | None = None
        self.hang_seconds = 2.0
        self.delay_seconds = 0.0  # every request takes at least this long (a slow partner)
        # Set: every request waits until it is set (a partner that answers when a test says so; unlike a delay,
        # no machine is ever too slow for the rest of the test to happen meanwhile). Bounded by hold_seconds.
        self.hold: threading.Event | None = None
        self.hold_seconds = 120.0
        # Set: an HTTP partner's 429 and 503 answers carry it as ``Retry-After`` (seconds or an HTTP date)
        self.retry_after: str | None = None

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._next.extend([fault] * times)

    def start_outage(self, fault: Fault = Fault.ERROR_503) -> None:
        self.outage = fault

    def heal(self) -> None:
        with self._lock:
            self._next.clear()
            self.outage = None

    def take(self) -> Fault | None:
        """The fault for the request arriving now, if any."""
        with self._lock:
            if self._next:
                return self._next.pop(0)
        return self.outage


@dataclass
class Case:
    claim_id: int
    file_number: str
    key: str
    created_at: float
    code: str = ACCEPTED
    step: int = 0
    open_amount: Decimal | None = None
    labels: list[str] = field(default_factory=list)
    monitoring: bool = False
    client_messages: list[str] = field(default_factory=list)
    direct_payments: list[dict[str, str]] = field(default_factory=list)  # {amount, date} the client reported
    cancel_reasons: list[str] = field(default_factory=list)  # as the agency read them in the requests
    scenario: str = DEFAULT_SCENARIO  # the codes it goes through (gateway/domain/sandbox.py SCENARIOS)

    @property
    def timeline(self) -> tuple[str, ...]:
        return SCENARIOS.get(self.scenario, TIMELINE)


DEFAULT_OPEN = Decimal("100.00")  # what the agency collects when the case file told it nothing else
ANSWER = "Vielen Dank für Ihre Nachricht, wir haben sie zur Akte genommen."
TIMELINE = (WORKING, PAID)  # after ACCEPTED, one step every ``step_seconds`` (the default scenario)
_ENDED = (PAID, CANCELLED, UNCOLLECTIBLE)


class Agency:
    """An agency's books: cases by claim, a journal of updates with sequence numbers, what arrived."""

    def __init__(self, name: str = "sim", *, step_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic, state_path: Path | None = None) -> None:
        # Case times are compared across restarts when the books are kept: that needs the wall clock.
        self.name, self.step_seconds = name, step_seconds
        self.clock = time.time if state_path is not None and clock is time.monotonic else clock
        self.state_path = state_path
        self.lock = threading.RLock()
        self.faults = Faults()
        self.cases: dict[int, Case] = {}
        self.create_requests: Counter[int] = Counter()  # every create seen, duplicates included
        self.cases_created: Counter[int] = Counter()  # must stay 1 per claim: the exactly-once proof
        self.batches: dict[str, dict[int, str]] = {}
        self.operations: dict[str, dict[str, Any]] = {}  # idempotency key -> what was done
        self.journal: list[PartnerUpdate] = []
        self.committed = 0
        self.next_number = 1
        self._saving_held = False
        if state_path is not None and (books := load_books(state_path)) is not None:
            self._restore(books)

    # -- intake ------------------------------------------------------------------------------
    def receive_batch(self, batch_id: str, claims: list[tuple[int, str]],
                      amounts: dict[int, Decimal] | None = None,
                      scenarios: dict[int, str] | None = None) -> dict[int, str]:
        """Open a case per (claim id, key) once; the same batch or claim again is folded."""
        with self.lock:
            if batch_id in self.batches:
                for cid, _ in claims:
                    self.create_requests[cid] += 1
                return dict(self.batches[batch_id])
            self._saving_held = True  # one save for the whole batch, not one per claim
            try:
                refs = {cid: self.create(cid, key, (amounts or {}).get(cid), (scenarios or {}).get(cid))
                        for cid, key in claims}
            finally:
                self._saving_held = False
            self.batches[batch_id] = refs
            self._changed()
            return dict(refs)

    def create(self, claim_id: int, key: str, amount: Decimal | None = None, scenario: str | None = None) -> str:
        """A case's file number; a claim seen before gets its existing number back."""
        with self.lock:
            self.create_requests[claim_id] += 1
            case = self.cases.get(claim_id)
            if case is None:
                case = Case(claim_id=claim_id, file_number=f"AZ-{self.name}-{self.next_number:07d}", key=key,
                            created_at=self.clock(), open_amount=amount, scenario=scenario or DEFAULT_SCENARIO)
                self.next_number += 1
                self.cases[claim_id] = case
                self.cases_created[claim_id] += 1
                self._emit(case, kind="status", code=ACCEPTED)
                self._changed()
            return case.file_number

    # -- time passes ---------------------------------------------------------------------------
    def advance(self) -> int:
        """Move cases along the timeline as their time has come; returns how many moved."""
        if self.step_seconds is None:
            return 0
        now, moved = self.clock(), 0
        with self.lock:
            for case in self.cases.values():
                due = int((now - case.created_at) // self.step_seconds)
                while case.step < min(due, len(case.timeline)) and case.code not in _ENDED:
                    self._step(case)
                    moved += 1
            if moved:
                self._changed()
        return moved

    def step_all(self, code: str | None = None) -> None:
        """Tests: move every open case one step (or set ``code``, e.g. an unknown one)."""
        with self.lock:
            for case in self.cases.values():
                if code is not None:
                    case.code = code
                    self._emit(case, kind="status", code=code)
                elif case.step < len(case.timeline) and case.code not in _ENDED:
                    self._step(case)
            self._changed()

    def _step(self, case: Case) -> None:
        code = case.timeline[case.step]
        case.step += 1
        if code == INSTALMENTS:  # the first half through the agency; the rest when the case is paid
            half = ((case.open_amount if case.open_amount is not None else DEFAULT_OPEN) / 2).quantize(Decimal("0.01"))
            if half > 0:
                self._emit(case, kind="payment", amount=str(half), currency="EUR",
                           date=datetime.now(timezone.utc).date().isoformat())
                case.open_amount = (case.open_amount if case.open_amount is not None else DEFAULT_OPEN) - half
            self._emit(case, kind="message", message_id=f"{case.file_number}-m{case.step}",
                       text="Mit dem Schuldner wurde eine Ratenzahlung vereinbart.")
        if code == PAID:
            amount = case.open_amount if case.open_amount is not None else DEFAULT_OPEN
            if amount > 0:  # what the client reported as paid directly is not collected again
                self._emit(case, kind="payment", amount=str(amount), currency="EUR",
                           date=datetime.now(timezone.utc).date().isoformat())
            self._emit(case, kind="message", message_id=f"{case.file_number}-m{case.step}",
                       text="Der Schuldner hat vollständig bezahlt.")
        case.code = code
        self._emit(case, kind="status", code=code)

    def _emit(self, case: Case, **fields: Any) -> None:
        seq = len(self.journal) + 1
        self.journal.append(PartnerUpdate(update_id=f"{self.name}-{seq}", claim_id=case.claim_id,
                                          partner_reference=case.file_number,
                                          occurred_at=datetime.now(timezone.utc).isoformat(), **fields))

    # -- status back -----------------------------------------------------------------------------
    def updates_after(self, cursor: str | None, limit: int = 1000) -> tuple[list[PartnerUpdate], str | None]:
        """Journal entries after the cursor (a sequence number) and the cursor after them."""
        self.advance()
        start = int(cursor) if cursor else 0
        with self.lock:
            page = self.journal[start:start + limit]
            return page, str(start + len(page)) if page else cursor

    def commit(self, cursor: str | None) -> None:
        """A partner with a transaction to commit: later fetches may drop what is committed."""
        with self.lock:
            if int(cursor or 0) > self.committed:
                self.committed = int(cursor or 0)
                self._changed()

    def claim_updates(self, claim_id: int) -> list[PartnerUpdate]:
        """A case's whole history (refresh of one claim)."""
        self.advance()
        with self.lock:
            if claim_id not in self.cases:
                raise KeyError(claim_id)
            return [u for u in self.journal if u.claim_id == claim_id]

    # -- per-claim operations ------------------------------------------------------------------
    def operate(self, key: str, operation: str, claim_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Apply an operation once per idempotency key; the same key again returns the first answer."""
        with self.lock:
            if key in self.operations:
                return self.operations[key]
            case = self.cases.get(claim_id)
            if case is None:
                raise KeyError(claim_id)
            answer: dict[str, Any] = {"file_number": case.file_number, "operation": operation}
            if operation == "cancel":
                case.cancel_reasons.append(str(data.get("reason") or ""))
                if case.code not in _ENDED:  # a closed case stays as it was closed
                    case.code = CANCELLED
                    self._emit(case, kind="status", code=CANCELLED)
            elif operation == "report_payment":
                paid = Decimal(str(data.get("amount", "0")))
                case.direct_payments.append({"amount": str(paid), "date": str(data.get("date", ""))})
                base = case.open_amount if case.open_amount is not None else DEFAULT_OPEN
                case.open_amount = max(base - paid, Decimal(0))
            elif operation == "send_message":
                case.client_messages.append(str(data.get("text", "")))
                self._emit(case, kind="message", message_id=f"{case.file_number}-a{len(case.client_messages)}",
                           text=ANSWER)
            elif operation == "refresh":
                self._emit(case, kind="status", code=case.code)
            elif operation == "request_monitoring":
                case.monitoring = True
                self._emit(case, kind="status", code="UEBERWACHUNG")
            elif operation == "set_labels":
                case.labels = [str(x) for x in data.get("labels", [])]
            self.operations[key] = answer
            self._changed()
            return answer

    def instruct(self, instruction_id: str, operation: str, claim_id: int, data: dict[str, Any]) -> bool:
        """An instruction document: a receipt into the journal, then the operation; once per instruction id."""
        with self.lock:
            if instruction_id in self.operations:
                return False
            case = self.cases.get(claim_id)
            receipt = INSTRUCTION_RECEIVED if case is not None else INSTRUCTION_REJECTED
            seq = len(self.journal) + 1
            self.journal.append(PartnerUpdate(
                update_id=f"{self.name}-{seq}", claim_id=claim_id, kind="instruction", code=receipt,
                partner_reference=case.file_number if case else "", instruction_id=instruction_id,
                occurred_at=datetime.now(timezone.utc).isoformat()))
            if case is None:
                self.operations[instruction_id] = {"operation": operation, "rejected": "unknown claim"}
                self._changed()
                return True
            self.operate(instruction_id, operation, claim_id, data)
            return True

    # -- books on disk ---------------------------------------------------------------------------
    def _changed(self) -> None:
        """Save the books after every change (callers hold the lock, so the file is one consistent state)."""
        if self.state_path is None or self._saving_held:
            return
        cases = [StoredCase(claim_id=c.claim_id, file_number=c.file_number, key=c.key, created_at=c.created_at,
                            code=c.code, step=c.step, labels=c.labels, monitoring=c.monitoring,
                            open_amount=None if c.open_amount is None else str(c.open_amount),
                            client_messages=c.client_messages, direct_payments=c.direct_payments,
                            scenario=c.scenario)
                 for c in self.cases.values()]
        save_books(self.state_path, Books(
            next_number=self.next_number, cases=cases, create_requests=dict(self.create_requests),
            cases_created=dict(self.cases_created), batches=self.batches, operations=self.operations,
            journal=self.journal, committed=self.committed))

    def _restore(self, books: Books) -> None:
        self.next_number, self.committed, self.journal = books.next_number, books.committed, books.journal
        self.batches, self.operations = books.batches, books.operations
        self.create_requests, self.cases_created = Counter(books.create_requests), Counter(books.cases_created)
        self.cases = {c.claim_id: Case(claim_id=c.claim_id, file_number=c.file_number, key=c.key,
                                       created_at=c.created_at, code=c.code, step=c.step, labels=c.labels,
                                       monitoring=c.monitoring, client_messages=c.client_messages,
                                       direct_payments=c.direct_payments, scenario=c.scenario,
                                       open_amount=None if c.open_amount is None else Decimal(c.open_amount))
                      for c in books.cases}

    def duplicates(self) -> dict[int, int]:
        """Claims that became more than one case (must be empty)."""
        with self.lock:
            return {cid: n for cid, n in self.cases_created.items() if n != 1}
