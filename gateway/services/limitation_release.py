"""Which claims of a release are time-barred today, so their release needs the client's reason.

The check is made again at release, under the client's policy of today, not read from the intake's hold
codes: a claim held for another reason (a collection run) may have become time-barred while it waited.
Only the stored body is read (the claim without the debtor), so nothing personal is decrypted.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import msgspec
from sqlalchemy import RowMapping

from gateway.domain.limitation import TIME_BARRED, LimitationPolicy, limitation_date

__all__ = ["MAX_REASON", "NEEDS_REASON", "TIME_BARRED", "time_barred"]
from gateway.domain.model import Claim

MAX_REASON = 1000
NEEDS_REASON = (f"time-barred ({TIME_BARRED}): release it with a reason, e.g. 'limitation interrupted by "
                "acknowledgement on YYYY-MM-DD'")
_body = msgspec.json.Decoder(Claim)


def time_barred(rows: Iterable[RowMapping], policy: LimitationPolicy, today: date) -> set[int]:
    """Ids of the stored claims (``claims`` rows with their body) whose limitation ended before ``today``."""
    if not policy.enabled:
        return set()
    barred: set[int] = set()
    for r in rows:
        end = limitation_date(_body.decode(r["body"]), policy)
        if end is not None and end < today:
            barred.add(int(r["id"]))
    return barred
