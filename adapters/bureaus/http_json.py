"""``http_json``: a credit bureau's JSON API through httpx (the style of current bureau REST APIs).

``POST <url>/v1/checks`` with the subject, the stated purpose and a query id; the answer says whether the
person is known (``match``/``no_match``), a score on the bureau's scale 0..1000 (higher is better) and
negative features by type. Anything else, a body that is not that JSON, is ``invalid_answer``.
"""

from __future__ import annotations

import secrets
import time
from datetime import date
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from adapters.bureaus.base import DEFAULT_MAX_ANSWER_BYTES, BureauError, read_capped, time_left
from gateway.domain.credit import BureauResult, NegativeEntry, Subject, SubjectKind
from gateway.errors import ConfigError

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# the bureau's feature types -> the core's entry kinds
FEATURES = {"INSOLVENCY": "insolvency", "ENFORCEMENT": "enforcement", "PAYMENT_DEFAULT": "payment_default",
            "SOFT_DEFAULT": "soft_payment_default", "COLLECTION": "collection_case",
            "ADDRESS_UNVERIFIED": "address_unverified"}
SCALE = 1000


class _Feature(msgspec.Struct, frozen=True):
    type: str
    date: str | None = None
    amount: str | None = None


class _Answer(msgspec.Struct, frozen=True):
    result: str  # match | no_match
    queryId: str
    score: int | None = None
    negativeFeatures: list[_Feature] = []


_decode = msgspec.json.Decoder(_Answer)


def request_body(subject: Subject, purpose: str, query_id: str) -> dict[str, Any]:
    """The JSON the bureau takes (also what its simulator reads)."""
    address = {"street": subject.street, "houseNumber": subject.house_number, "zip": subject.postal_code,
               "city": subject.city, "country": subject.country}
    return {"queryId": query_id, "purpose": purpose,
            "subject": {"type": subject.kind.value, "firstName": subject.first_name, "lastName": subject.last_name,
                        "companyName": subject.company if subject.kind is SubjectKind.BUSINESS else None,
                        "dateOfBirth": subject.birth_date.isoformat() if subject.birth_date else None,
                        "address": address}}


def to_result(bureau_id: str, raw: bytes) -> BureauResult:
    """The core's result from the bureau's answer; ``invalid_answer`` for anything else."""
    try:
        a = _decode.decode(raw)
        if a.result not in ("match", "no_match") or (a.score is not None and not 0 <= a.score <= SCALE):
            raise ValueError("result or score out of range")
        entries = [NegativeEntry(kind=FEATURES.get(f.type, f.type.lower()),
                                 date=date.fromisoformat(f.date) if f.date else None, amount=f.amount)
                   for f in a.negativeFeatures]
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        # the type of problem only: the body may quote the subject back
        raise BureauError(bureau_id, "invalid_answer", f"not the bureau's JSON answer ({type(exc).__name__})",
                          retryable=False) from None
    return BureauResult(found=a.result == "match", reference=a.queryId, entries=entries,
                        score=None if a.score is None else round(a.score * 100 / SCALE))


class HttpJsonBureau:
    """One httpx client per bureau; each call streams its answer within the call's deadline and size cap."""

    name = "http_json"

    def __init__(self, bureau_id: str, options: Mapping[str, Any], timeout: float, *,
                 max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> None:
        self.bureau_id, self.timeout, self.max_answer_bytes = bureau_id, timeout, max_answer_bytes
        url = options.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError("the http_json bureau needs option 'url' (http:// or https://)",
                              key=f"bureaus.{bureau_id}.options.url")
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                   headers={"User-Agent": "inkasso-gateway", "Accept-Encoding": "identity"})

    def check(self, subject: Subject, *, purpose: str = "", deadline: float | None = None) -> BureauResult:
        """One query; BureauError (retryable for timeouts, refused connections and 5xx) when no answer."""
        end = time.monotonic() + self.timeout if deadline is None else deadline
        left = time_left(self.bureau_id, end)
        try:
            # httpx's timeouts bound each network operation, not the call: the body is streamed and given up
            # at the deadline (and at the size cap) so a bureau trickling bytes cannot hold the thread
            with self.client.stream("POST", "/v1/checks", json=request_body(subject, purpose, secrets.token_hex(8)),
                                    timeout=left) as r:
                if r.status_code >= 400:
                    retry = r.status_code in _RETRY_STATUS
                    raise BureauError(self.bureau_id, "unavailable" if retry else "refused",
                                      f"HTTP {r.status_code}", retryable=retry)
                if r.headers.get("content-encoding", "identity").strip().lower() != "identity":
                    # asked for identity: a compressed body could unpack far past the size cap
                    raise BureauError(self.bureau_id, "invalid_answer", "compressed answer not asked for",
                                      retryable=False)
                raw = read_capped(self.bureau_id, r.iter_raw(), self.max_answer_bytes, end,
                                  r.headers.get("content-length"))
        except httpx.TimeoutException:
            raise BureauError(self.bureau_id, "timeout", "no answer in time", retryable=True) from None
        except httpx.TransportError as exc:
            raise BureauError(self.bureau_id, "unavailable", type(exc).__name__, retryable=True) from None
        return to_result(self.bureau_id, raw)

    def close(self) -> None:
        self.client.close()
