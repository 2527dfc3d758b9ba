"""``soap``: a credit bureau's SOAP report service through zeep (``adapters.bureaus.soap_wsdl``).

The WSDL is loaded on first use (a bureau down at start-up fails retryably when asked, not at start).
The solvency index 100 (best) .. 600 (worst) becomes the core's score 100 .. 0.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Mapping
from typing import Any

import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.transports import Transport

from adapters.bureaus.base import BureauError
from gateway.domain.credit import BureauResult, NegativeEntry, Subject, SubjectKind
from gateway.errors import ConfigError

# zeep logs every envelope it sends and receives at DEBUG: here that is the subject's name, birth date and
# address, and the bureau's answer about them, which must never reach a log.
_ZEEP_TRANSPORT_LOG = logging.getLogger("zeep.transports")
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CODES = {"INSO": "insolvency", "ZWVO": "enforcement", "ZAHL": "payment_default", "MAHN": "soft_payment_default",
         "INKA": "collection_case", "ADRU": "address_unverified"}
BEST, WORST = 100, 600


def score_of(index: int) -> int:
    """The core's 0..100 (higher better) from the bureau's index 100..600 (lower better)."""
    return round((WORST - index) * 100 / (WORST - BEST))


class SoapBureau:
    """A zeep client per bureau, built lazily from the bureau's WSDL."""

    name = "soap"

    def __init__(self, bureau_id: str, options: Mapping[str, Any], timeout: float) -> None:
        self.bureau_id = bureau_id
        wsdl = options.get("wsdl")
        if not isinstance(wsdl, str) or not wsdl.startswith(("http://", "https://")):
            raise ConfigError("the soap bureau needs option 'wsdl' (the bureau's WSDL URL)",
                              key=f"bureaus.{bureau_id}.options.wsdl")
        self.wsdl, self.timeout = wsdl, timeout
        _ZEEP_TRANSPORT_LOG.setLevel(max(_ZEEP_TRANSPORT_LOG.getEffectiveLevel(), logging.INFO))
        self._client: zeep.Client | None = None
        self._lock = threading.Lock()

    def _service(self) -> Any:
        with self._lock:
            if self._client is None:
                transport = Transport(timeout=self.timeout, operation_timeout=self.timeout)  # type: ignore[no-untyped-call]
                self._client = zeep.Client(self.wsdl, transport=transport)  # type: ignore[no-untyped-call]
            return self._client.service

    def check(self, subject: Subject, *, purpose: str = "") -> BureauResult:
        """One ``RequestReport``; BureauError when there is no usable answer."""
        business = subject.kind is SubjectKind.BUSINESS
        try:
            answer = self._service().RequestReport(
                queryId=secrets.token_hex(8), purpose=purpose, subjectType="B" if business else "P",
                firstName=subject.first_name, lastName=subject.last_name,
                companyName=subject.company if business else None, birthDate=subject.birth_date,
                street=subject.street, houseNumber=subject.house_number, postalCode=subject.postal_code,
                city=subject.city, country=subject.country)
        except requests.Timeout:
            raise BureauError(self.bureau_id, "timeout", "no answer in time", retryable=True) from None
        except requests.ConnectionError as exc:
            raise BureauError(self.bureau_id, "unavailable", type(exc).__name__, retryable=True) from None
        except zeep.exceptions.TransportError as exc:
            if exc.status_code == 200:  # zeep's word for a 200 whose body is not SOAP
                raise BureauError(self.bureau_id, "invalid_answer", "not the bureau's SOAP answer",
                                  retryable=False) from None
            retry = exc.status_code in _RETRY_STATUS
            raise BureauError(self.bureau_id, "unavailable" if retry else "refused", f"HTTP {exc.status_code}",
                              retryable=retry) from None
        except zeep.exceptions.Fault as exc:
            server = "Client" not in str(exc.code or "")
            raise BureauError(self.bureau_id, "unavailable" if server else "refused", f"SOAP fault {exc.code}",
                              retryable=server) from None
        except (zeep.exceptions.Error, etree.Error, ValueError) as exc:
            raise BureauError(self.bureau_id, "invalid_answer", f"not the bureau's SOAP answer "
                              f"({type(exc).__name__})", retryable=False) from None
        return self._result(answer)

    def _result(self, answer: Any) -> BureauResult:
        status, index = getattr(answer, "status", None), getattr(answer, "solvencyIndex", None)
        if status not in ("HIT", "NO_HIT") or (index is not None and not BEST <= index <= WORST):
            raise BureauError(self.bureau_id, "invalid_answer", "status or solvency index out of range",
                              retryable=False)
        entries = [NegativeEntry(kind=CODES.get(str(e.code), str(e.code).lower()), date=e.date,
                                 amount=None if e.amount is None else str(e.amount)) for e in answer.entry or []]
        return BureauResult(found=status == "HIT", score=None if index is None else score_of(index),
                            entries=entries, reference=answer.reportId)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.transport.session.close()
                self._client = None
