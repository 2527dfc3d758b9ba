"""``soap``: a partner's SOAP API through zeep (create claim -> file number, status changes in a transaction).

Modelled on what agencies offer (``adapters.soap_wsdl``): ``CreateClaims`` with one idempotency key per
claim, ``GetStatusChanges`` + ``CommitStatusChanges`` (the partner keeps the cursor; we commit a page
only after it is stored), ``GetHistory`` for a refresh, and per-claim calls for cancel, payments,
messages, monitoring and labels. The WSDL is loaded on first use, so a partner that is down at start-up
only fails (retryably) when we actually call it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import requests
import requests.structures
import requests.utils
import zeep
import zeep.exceptions
from zeep.transports import Transport

from adapters.base import (Batch, Operation, OperationResult, OperationsMixin, PartnerUpdate, Receipt, UpdatePage,
                           confirmed_references, safe_code)
from adapters.http_exchange import (DEFAULT_DEADLINE, DEFAULT_MAX_ANSWER_BYTES, AnswerEncoding, AnswerTooLarge,
                                    Exchange, retry_after)
from adapters.tls import ca_file_option, certificate_failure, certificate_text, with_environment_bundles
from gateway.errors import ConfigError, DeliveryError

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# What the partner answered that is not a SOAP answer of its WSDL (a proxy's page, broken XML, another namespace,
# a DTD): it says nothing about the request, so it is retried like a malformed HTTP answer, never dead at once.
_NOT_UNDERSTOOD = (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError,
                   zeep.exceptions.UnexpectedElementError, zeep.exceptions.DTDForbidden,
                   zeep.exceptions.EntitiesForbidden, zeep.exceptions.ExternalReferenceForbidden)


class _BoundedTransport(Transport):
    """zeep's transport over ``Exchange``: the WSDL and every call end by the deadline and hold at most the
    answer limit (requests, under zeep's own transport, has a timeout per read only and keeps any body).

    One deadline for the adapter's whole call (``ends_at``): the first call loads the WSDL and the schemas it
    imports, each a request of its own, and then calls the operation; each with a deadline of its own, a slow
    partner's first call could last several deadlines, past ``dispatcher.stuck_seconds``, and a healthy but slow
    partner was reported stuck."""

    def __init__(self, exchange: Exchange) -> None:
        super().__init__(timeout=exchange.timeout, operation_timeout=exchange.timeout)  # type: ignore[no-untyped-call]
        self.exchange = exchange
        self.retry_after: float | None = None  # of the last answer (zeep's TransportError carries no headers)
        self.ends_at: float | None = None  # time.monotonic() by which the adapter's current call must end

    def _left(self) -> float | None:
        return None if self.ends_at is None else self.ends_at - time.monotonic()

    def _load_remote_data(self, url: str) -> bytes:
        if url.lower().startswith("file:"):  # a WSDL (or its schemas) kept as a local file: no network to bound
            return bytes(super()._load_remote_data(url))  # type: ignore[no-untyped-call]
        answer = self.exchange.request("GET", url, within=self._left())
        if answer.status >= 300:
            raise zeep.exceptions.TransportError(status_code=answer.status)  # type: ignore[no-untyped-call]
        return answer.content

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        answer = self.exchange.request("POST", address, content=message, headers=headers, within=self._left())
        self.retry_after = retry_after(answer) if answer.status in (429, 503) else None
        response = requests.Response()
        response.status_code, response.url = answer.status, address
        response.headers = requests.structures.CaseInsensitiveDict(answer.headers)
        response._content = answer.content
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        return response
# zeep's transport writes every request and answer body at DEBUG: message texts, status changes, a partner's
# fault repeating a debtor's name. No log level may show debtor data, so that logger stays at INFO.
logging.getLogger("zeep.transports").setLevel(logging.INFO)


def _updates(where: str, changes: Any) -> list[PartnerUpdate]:
    """The partner's changes as updates; one that cannot be read fails the page (retryably), naming its index."""
    out = []
    for i, change in enumerate(changes or []):
        try:
            out.append(_update(change))
        except (TypeError, ValueError, AttributeError):
            raise DeliveryError(f"{where}: answer not understood (change {i} has no update id or claim id of ours)",
                                retryable=True) from None
    return out


def _update(change: Any) -> PartnerUpdate:
    if change.updateId is None or change.externalId is None:
        raise ValueError("incomplete change")
    return PartnerUpdate(update_id=str(change.updateId), claim_id=int(change.externalId), kind=str(change.kind),
                         code=change.code or "", partner_reference=change.fileNumber or "", amount=change.amount,
                         currency=change.currency, date=change.date, message_id=change.messageId, text=change.text,
                         occurred_at=change.occurredAt)


class SoapAdapter(OperationsMixin):
    """A zeep client per partner, built lazily from the partner's WSDL."""

    name = "soap"
    retryable: tuple[type[BaseException], ...] = (httpx.TransportError, requests.ConnectionError, requests.Timeout)
    capabilities: ClassVar[frozenset[str]] = frozenset({
        "deliver", "status_pull", "cancel", "direct_payment", "message", "long_term_monitoring", "refresh",
        "documents", "labels"})

    def __init__(self, partner_id: str, options: Mapping[str, Any]) -> None:
        self.partner_id = partner_id
        wsdl = options.get("wsdl")
        if not isinstance(wsdl, str) or not wsdl:
            raise ConfigError("the soap adapter needs option 'wsdl' (the partner's WSDL URL)",
                              key=f"partners.{partner_id}.options.wsdl")
        self.wsdl, self.timeout = wsdl, float(options.get("timeout", 30.0))
        # ``timeout`` bounds each network step, ``deadline`` each whole call (the WSDL's load included: one deadline
        # for both, so that an attempt lasts at most retry.in_call_attempts x deadline, as for http).
        deadline = float(options.get("deadline", DEFAULT_DEADLINE))
        max_bytes = int(options.get("max_answer_bytes", DEFAULT_MAX_ANSWER_BYTES))
        if deadline <= 0 or max_bytes <= 0:
            raise ConfigError("options 'deadline' (seconds) and 'max_answer_bytes' must be positive",
                              key=f"partners.{partner_id}.options")
        # The partner's certificate: against ``ca_file`` (its private CA) alone if set; else httpx's default store
        # (SSL_CERT_FILE, SSL_CERT_DIR, else certifi's) and, as when zeep's transport was requests, the bundles that
        # REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE name.
        self.exchange = Exchange("", {"User-Agent": "inkasso-gateway"}, timeout=self.timeout, deadline=deadline,
                                 max_bytes=max_bytes, ca_file=ca_file_option(partner_id, options),
                                 default_tls=with_environment_bundles(httpx.create_ssl_context),
                                 where=f"partner {partner_id}")
        self._client: zeep.Client | None = None
        self._transport: _BoundedTransport | None = None

    def _call(self, op: str, **kwargs: Any) -> Any:
        where = f"partner {self.partner_id}: SOAP {op}"
        if self._client is None or self._transport is None:
            self._client, self._transport = None, _BoundedTransport(self.exchange)
        # ``deadline`` bounds the whole call, the WSDL's load on first use included (see _BoundedTransport)
        self._transport.ends_at = time.monotonic() + self.exchange.deadline
        try:
            if self._client is None:
                self._client = zeep.Client(self.wsdl, transport=self._transport)  # type: ignore[no-untyped-call]
            return getattr(self._client.service, op)(**kwargs)
        except TimeoutError:
            raise DeliveryError(f"{where}: no whole answer within the deadline of {self.exchange.deadline:g} s",
                                retryable=True) from None
        except (httpx.TransportError, requests.ConnectionError, requests.Timeout) as exc:
            if (failure := certificate_failure(exc)) is not None:  # the same at every attempt: the operator's
                raise DeliveryError(f"{where}: {certificate_text(failure)}", retryable=False) from None
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
        except AnswerTooLarge as exc:
            raise DeliveryError(f"{where}: {exc} (option max_answer_bytes); not read further", retryable=True) from None
        except AnswerEncoding as exc:
            raise DeliveryError(f"{where}: answer not understood ({exc})", retryable=True) from None
        except zeep.exceptions.TransportError as exc:
            status = exc.status_code
            if 200 <= status < 300:  # zeep found no SOAP envelope in a 2xx (empty, a proxy's page, broken XML)
                raise DeliveryError(f"{where}: HTTP {status} answer not understood (no SOAP envelope)",
                                    retryable=True) from None
            if 300 <= status < 400:  # not followed: the case file would go where the partner's server says
                raise DeliveryError(f"{where}: HTTP {status} redirect, not followed (check option wsdl)",
                                    retryable=status not in (301, 308)) from None
            wait = self._transport.retry_after
            raise DeliveryError(f"{where}: HTTP {status}{f' (Retry-After {wait:g} s)' if wait is not None else ''}",
                                retryable=status in _RETRY_STATUS, retry_after=wait) from None
        except _NOT_UNDERSTOOD as exc:
            # Named by type only: zeep's text may quote the partner's answer (an entity's content, say).
            raise DeliveryError(f"{where}: answer not understood ({type(exc).__name__})", retryable=True) from None
        except zeep.exceptions.Fault as exc:
            # soap:Server faults are the partner's trouble and may pass; soap:Client faults are ours. The fault's
            # text may repeat what it was sent (a debtor's name): only its code is kept.
            # Not chained either: a traceback printed with this error would show the fault's text.
            code = safe_code(exc.code) or "(no code)"
            raise DeliveryError(f"{where}: fault {code}", retryable="Client" not in str(exc.code or "")) from None
        except zeep.exceptions.Error as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=False) from exc

    def deliver(self, batch: Batch) -> Receipt:
        """One CreateClaims call per batch; the partner folds claims it has by idempotency key."""
        where = f"partner {self.partner_id}: SOAP CreateClaims"
        answer = self._call("CreateClaims", batchId=batch.batch_id, document=batch.payload,
                            claim=[{"externalId": c, "idempotencyKey": batch.claim_key(c)} for c in batch.claim_ids])
        try:
            named = {int(r.externalId): str(r.fileNumber or "").strip() for r in (answer or [])}
        except (TypeError, ValueError, AttributeError):
            raise DeliveryError(f"{where}: answer not understood (a result without an externalId of ours)",
                                retryable=True) from None
        refs = confirmed_references(where, batch, named)
        return Receipt(batch_id=batch.batch_id, partner_reference=f"{self.partner_id}:{batch.batch_id}",
                       delivered_at=dt.datetime.now(dt.timezone.utc), detail=f"{len(refs)} claims created",
                       references=refs)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.session.close()  # zeep's own requests session: unused, but opened
        self._client, self._transport = None, None

    # -- per-claim operations ------------------------------------------------------------------
    def _ack(self, op: Operation, name: str, **extra: Any) -> OperationResult:
        answer = self._call(name, externalId=op.claim_id, idempotencyKey=op.key, **extra)
        return OperationResult(detail=str(answer or ""))

    def op_cancel(self, op: Operation) -> OperationResult:
        return self._ack(op, "CloseClaim", reason=op.data.get("reason", ""))

    def op_report_payment(self, op: Operation) -> OperationResult:
        return self._ack(op, "BookDirectPayment", amount=Decimal(str(op.data["amount"])),
                         currency=op.data.get("currency"), date=dt.date.fromisoformat(str(op.data["date"])))

    def op_send_message(self, op: Operation) -> OperationResult:
        return self._ack(op, "SendMessage", messageId=op.data.get("message_id"), text=op.data.get("text"))

    def op_request_monitoring(self, op: Operation) -> OperationResult:
        return self._ack(op, "RequestMonitoring")

    def op_set_labels(self, op: Operation) -> OperationResult:
        return self._ack(op, "SetLabels", label=list(op.data.get("labels", [])))

    def op_refresh(self, op: Operation) -> OperationResult:
        answer = self._call("GetHistory", externalId=op.claim_id)
        where = f"partner {self.partner_id}: SOAP GetHistory"
        return OperationResult(detail=str(getattr(answer, "status", "")),
                               updates=_updates(where, getattr(answer, "change", None)))

    # -- status back -----------------------------------------------------------------------------
    def fetch_updates(self, cursor: str | None) -> UpdatePage:
        """Uncommitted status changes; the page's cursor is the partner's transaction id."""
        answer = self._call("GetStatusChanges", maxCount=1000)
        where = f"partner {self.partner_id}: SOAP GetStatusChanges"
        updates = _updates(where, getattr(answer, "change", None))
        transaction = getattr(answer, "transactionId", None)
        if updates and transaction is None:  # a page that cannot be committed would come again for ever
            raise DeliveryError(f"{where}: answer not understood (changes without a transactionId)", retryable=True)
        return UpdatePage(updates=updates, cursor=None if transaction is None else str(transaction))

    def commit_updates(self, page: UpdatePage) -> None:
        """Commit the transaction once the page is stored, so the partner drops it."""
        if page.updates:
            self._call("CommitStatusChanges", transactionId=page.cursor)
