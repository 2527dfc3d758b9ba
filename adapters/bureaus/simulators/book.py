"""What a simulated bureau knows, and the faults it can be told to show.

Records are keyed by the subject's display name (case- and space-insensitive); a name not in the book is
an "unknown person". Scores are kept on the core's scale (0..100, higher better); each simulator turns
them into its bureau's own scale, so the adapters' conversions are exercised.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field


class Fault(str, enum.Enum):
    NONE = "none"
    SLOW = "slow"  # answer after ``delay_seconds``
    DOWN = "down"  # the listener is closed: connections are refused
    ERROR = "error"  # HTTP 503 (SOAP: a soap:Server fault)
    GARBAGE = "garbage"  # 200 with a body that is not the bureau's format
    HUGE = "huge"  # the right answer followed by 2 MiB of whitespace, no Content-Length (read until close)
    TRICKLE = "trickle"  # the right answer one byte every ``delay_seconds`` (each read is quick, the whole is not)


@dataclass(frozen=True)
class Record:
    score: int | None = None  # core scale 0..100
    entries: tuple[tuple[str, str, str | None], ...] = ()  # (core entry kind, ISO date, amount)


# Fictitious people and companies of the demo and the tests.
DEMO: dict[str, Record] = {
    "erika mustermann": Record(score=92),
    "max mustermann": Record(score=55),
    "paul pleite": Record(score=20, entries=(("insolvency", "2025-03-01", None),)),
    "vera vollstreckt": Record(score=35, entries=(("enforcement", "2024-11-15", "1250.00"),)),
    "hans hart": Record(score=40, entries=(("payment_default", "2025-06-30", "480.00"),)),
    "sabine säumig": Record(score=75, entries=(("soft_payment_default", "2025-09-01", "89.90"),)),
    "musterbau gmbh": Record(score=88),
}


def key(name: str) -> str:
    return " ".join(name.casefold().split())


@dataclass
class BureauBook:
    """The records and the current fault of one simulated bureau (thread-safe counters)."""

    records: dict[str, Record] = field(default_factory=lambda: dict(DEMO))
    fault: Fault = Fault.NONE
    delay_seconds: float = 5.0
    queries: int = 0  # answered or not: every request that reached the bureau (paid queries)
    purposes: list[str] = field(default_factory=list)
    asked: dict[str, int] = field(default_factory=dict)  # requests per name (a test counts one subject's)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lookup(self, name: str, purpose: str) -> Record | None:
        with self.lock:
            self.queries += 1
            self.purposes.append(purpose)
            self.asked[key(name)] = self.asked.get(key(name), 0) + 1
        return self.records.get(key(name))
