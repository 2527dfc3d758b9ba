"""``soap``: a credit bureau's SOAP report service through zeep (``adapters.bureaus.soap_wsdl``).

The WSDL is loaded on first use (a bureau down at start-up fails retryably when asked, not at start).
The solvency index 100 (best) .. 600 (worst) becomes the core's score 100 .. 0.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from contextlib import closing
from collections.abc import Iterator, Mapping
from typing import Any

import requests
import urllib3
import zeep
import zeep.exceptions
from lxml import etree
from zeep.transports import Transport

from adapters.bureaus.base import DEFAULT_MAX_ANSWER_BYTES, BureauError, read_capped, time_left
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


def _arriving(raw: Any) -> Iterator[bytes]:
    """The body as it arrives: urllib3's ``read(n)`` waits for all n bytes (or the end), so a bureau sending
    a byte at a time would never let the deadline be looked at; ``read1`` returns what is there."""
    read1 = getattr(raw, "read1", None)  # urllib3 >= 2.3
    while True:
        data = read1(65536, decode_content=False) if read1 is not None else raw.read(512, decode_content=False)
        if not data:
            return
        yield data


class _CappedTransport(Transport):
    """zeep's transport, reading every answer (WSDL, schemas, reports) streamed, up to ``max_bytes`` and the
    calling thread's deadline: requests' timeouts bound each socket read, not the answer."""

    def __init__(self, bureau_id: str, timeout: float, max_bytes: int) -> None:
        super().__init__(timeout=timeout, operation_timeout=timeout)  # type: ignore[no-untyped-call]
        self.bureau_id, self.budget, self.max_bytes = bureau_id, timeout, max_bytes
        self.session.headers["Accept-Encoding"] = "identity"  # a compressed body could unpack past the cap
        self.deadlines = threading.local()

    def _deadline(self) -> float:
        deadline: float | None = getattr(self.deadlines, "at", None)
        return time.monotonic() + self.budget if deadline is None else deadline

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        if response.headers.get("content-encoding", "identity").strip().lower() != "identity":
            raise BureauError(self.bureau_id, "invalid_answer", "compressed answer not asked for", retryable=False)
        try:
            return read_capped(self.bureau_id, _arriving(response.raw), self.max_bytes, deadline,
                               response.headers.get("content-length"))
        except urllib3.exceptions.ReadTimeoutError:  # read from urllib3 directly: its errors, not requests'
            raise BureauError(self.bureau_id, "timeout", "no answer in time", retryable=True) from None
        except urllib3.exceptions.HTTPError as exc:
            raise BureauError(self.bureau_id, "unavailable", type(exc).__name__, retryable=True) from None

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        deadline = self._deadline()
        response = self.session.post(address, data=message, headers=headers, stream=True,
                                     timeout=time_left(self.bureau_id, deadline))
        with closing(response):
            response._content = self._read(response, deadline)  # what zeep reads as response.content
        return response

    def _load_remote_data(self, url: str) -> bytes:
        deadline = self._deadline()
        response = self.session.get(url, stream=True, timeout=time_left(self.bureau_id, deadline))
        with closing(response):
            response.raise_for_status()
            return self._read(response, deadline)


class SoapBureau:
    """A zeep client per bureau, built lazily from the bureau's WSDL."""

    name = "soap"

    def __init__(self, bureau_id: str, options: Mapping[str, Any], timeout: float, *,
                 max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> None:
        self.bureau_id, self.max_answer_bytes = bureau_id, max_answer_bytes
        wsdl = options.get("wsdl")
        if not isinstance(wsdl, str) or not wsdl.startswith(("http://", "https://")):
            raise ConfigError("the soap bureau needs option 'wsdl' (the bureau's WSDL URL)",
                              key=f"bureaus.{bureau_id}.options.wsdl")
        self.wsdl, self.timeout = wsdl, timeout
        _ZEEP_TRANSPORT_LOG.setLevel(max(_ZEEP_TRANSPORT_LOG.getEffectiveLevel(), logging.INFO))
        self._client: zeep.Client | None = None
        self._transport: _CappedTransport | None = None
        self._lock = threading.Lock()

    def _service(self) -> Any:
        with self._lock:
            if self._client is None:
                self._transport = _CappedTransport(self.bureau_id, self.timeout, self.max_answer_bytes)
                self._client = zeep.Client(self.wsdl, transport=self._transport)  # type: ignore[no-untyped-call]
            return self._client.service

    def check(self, subject: Subject, *, purpose: str = "", deadline: float | None = None) -> BureauResult:
        """One ``RequestReport`` within ``deadline``; BureauError when there is no usable answer."""
        business = subject.kind is SubjectKind.BUSINESS
        end = time.monotonic() + self.timeout if deadline is None else deadline
        time_left(self.bureau_id, end)
        try:
            service = self._service()
            assert self._transport is not None
            self._transport.deadlines.at = end
            answer = service.RequestReport(
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
        finally:
            if self._transport is not None:
                self._transport.deadlines.at = None
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
