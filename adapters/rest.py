"""``http``: a partner's JSON API in the style of current agency REST APIs, through httpx.

Create claims (a batch manifest with one idempotency key per claim, the encrypted case file attached),
release them, read the events feed, and per-claim calls for payments, messages, cancellation,
monitoring and labels. Pushed events arrive at the gateway's webhook signed with HMAC-SHA256.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import msgspec

from adapters.base import (Batch, Operation, OperationResult, OperationsMixin, PartnerUpdate, Receipt, UpdatePage,
                           confirmed_references, safe_code, updates_from)
from adapters.http_exchange import (DEFAULT_DEADLINE, DEFAULT_MAX_ANSWER_BYTES, Answer, AnswerEncoding,
                                    AnswerTooLarge, Exchange, retry_after)
from adapters.tls import ca_file_option, certificate_failure, certificate_text
from gateway.errors import ConfigError, DeliveryError

SIGNATURE_HEADER = "X-Signature-SHA256"
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Refused credentials are not retried: the row is dead at once and alerted, and the error says what to mend.
_AUTH = {401: ": the partner refused the gateway's credentials (option token_env)",
         403: ": the partner refused the gateway's credentials or this call (option token_env)"}
_updates = msgspec.json.Decoder(list[PartnerUpdate])


def sign_body(secret: bytes, body: bytes) -> str:
    """The signature header value for a webhook body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True if ``header`` is the HMAC-SHA256 of ``body`` under ``secret`` (constant time)."""
    return bool(header) and hmac.compare_digest(sign_body(secret, body), str(header))


class HttpAdapter(OperationsMixin):
    """One httpx client per partner; every call carries an ``Idempotency-Key`` header."""

    name = "http"
    retryable: tuple[type[BaseException], ...] = (httpx.TransportError,)
    capabilities: ClassVar[frozenset[str]] = frozenset({
        "deliver", "status_pull", "status_push", "cancel", "direct_payment", "message", "long_term_monitoring",
        "refresh", "documents", "labels"})

    def __init__(self, partner_id: str, options: Mapping[str, Any]) -> None:
        self.partner_id = partner_id
        url = options.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError("the http adapter needs option 'url' (http:// or https://)",
                              key=f"partners.{partner_id}.options.url")
        headers = {"User-Agent": "inkasso-gateway"}
        token_env = options.get("token_env")
        # A token the config names but the environment does not hold: nothing is sent without it (before, every
        # call went out unauthenticated, and a partner's 401 blamed its refusal of the credentials)
        self.missing_token: str | None = None
        if token_env and os.environ.get(str(token_env)):
            headers["Authorization"] = f"Bearer {os.environ[str(token_env)]}"
        elif token_env:
            self.missing_token = str(token_env)
        timeout = float(options.get("timeout", 30.0))
        # Only for ``gateway partners test``; the adapter's own calls go through ``self.exchange``.
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        # ``timeout`` bounds each network step; ``deadline`` the whole call, however slowly the partner answers.
        deadline = float(options.get("deadline", DEFAULT_DEADLINE))
        max_bytes = int(options.get("max_answer_bytes", DEFAULT_MAX_ANSWER_BYTES))
        if deadline <= 0 or max_bytes <= 0:
            raise ConfigError("options 'deadline' (seconds) and 'max_answer_bytes' must be positive",
                              key=f"partners.{partner_id}.options")
        # The partner's certificate: against ``ca_file`` (its private CA) if set, else httpx's default store.
        self.exchange = Exchange(url.rstrip("/"), headers, timeout=timeout, deadline=deadline, max_bytes=max_bytes,
                                 ca_file=ca_file_option(partner_id, options), where=f"partner {partner_id}")

    def _call(self, method: str, path: str, *, key: str | None = None, body: Any = None,
              params: dict[str, str] | None = None, ends_at: float | None = None) -> Any:
        """One request; ``ends_at`` (``time.monotonic()``): the end of the adapter call it is a step of."""
        headers = {"Idempotency-Key": key} if key else {}
        where = f"partner {self.partner_id}: {method} {path}"
        if self.missing_token is not None:  # the operator's to mend (and serve's to restart with): retried until
            raise DeliveryError(f"{where}: option token_env names {self.missing_token}, which is not set (or empty) "
                                "in the gateway's environment; not sent without the partner's token", retryable=True)
        ex = self.exchange
        try:
            r = ex.request(method, path, json=body, params=params, headers=headers,
                           within=None if ends_at is None else ends_at - time.monotonic())
        except TimeoutError:
            raise DeliveryError(f"{where}: no whole answer within the deadline of {ex.deadline:g} s",
                                retryable=True) from None
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"{where}: timed out ({type(exc).__name__})", retryable=True) from exc
        except httpx.TransportError as exc:
            if (failure := certificate_failure(exc)) is not None:  # the same at every attempt: the operator's
                raise DeliveryError(f"{where}: {certificate_text(failure)}", retryable=False) from None
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
        except AnswerTooLarge as exc:  # retried: a partner's runaway answer is its trouble, and may pass
            raise DeliveryError(f"{where}: {exc} (option max_answer_bytes); not read further",
                                retryable=True) from None
        except AnswerEncoding as exc:
            raise self._malformed(where, str(exc)) from None
        if 300 <= r.status < 400:
            raise _redirected(where, r)
        if r.status >= 400:
            # The partner's error text may repeat what it was sent (a debtor's name, an address): only the status
            # and an error code that is a plain token are kept, for the error column and the log alike.
            wait = retry_after(r) if r.status in (429, 503) else None
            raise DeliveryError(f"{where}: HTTP {r.status}{_error_code(r.content)}{_AUTH.get(r.status, '')}"
                                f"{f' (Retry-After {wait:g} s)' if wait is not None else ''}",
                                retryable=r.status in _RETRY_STATUS, retry_after=wait)
        if not r.content:
            return None
        try:
            return json.loads(r.content, parse_float=Decimal)  # amounts exactly as written, never a float
        except ValueError:  # a proxy's page, a half-deployed partner: it says nothing about the request
            raise DeliveryError(f"{where}: HTTP {r.status} answer is not JSON "
                                f"({r.headers.get('content-type', 'no content type')[:60]}, {len(r.content)} bytes)",
                                retryable=True) from None

    @staticmethod
    def _malformed(where: str, what: str) -> DeliveryError:
        # A 2xx whose body is not what the API promises: retried (the partner folds a repeated call by its key).
        return DeliveryError(f"{where}: answer not understood ({what})", retryable=True)

    def deliver(self, batch: Batch) -> Receipt:
        """Create every claim of the batch (folded by key at the partner), then release them."""
        manifest = {"batch_id": batch.batch_id, "filename": batch.filename,
                    "document": base64.b64encode(batch.payload).decode(),
                    "claims": [{"external_id": c, "idempotency_key": batch.claim_key(c)} for c in batch.claim_ids]}
        where = f"partner {self.partner_id}: POST /v1/claims"
        # One deadline for the create and the release together, so that an attempt lasts at most
        # retry.in_call_attempts x deadline, what dispatcher.stuck_seconds is set against.
        ends_at = time.monotonic() + self.exchange.deadline
        created = self._call("POST", "/v1/claims", key=batch.batch_id, body=manifest, ends_at=ends_at)
        listed = created.get("claims") if isinstance(created, dict) else None
        if not isinstance(listed, list):
            raise self._malformed(where, "no list 'claims'")
        named: dict[int, str] = {}
        for c in listed:
            cid = c.get("external_id") if isinstance(c, dict) else None
            number = c.get("file_number") if isinstance(c, dict) else None
            if isinstance(cid, bool) or not isinstance(cid, (int, str)) or not str(cid).isdigit():
                raise self._malformed(where, "a claim without an 'external_id' of ours")
            named[int(cid)] = str(number) if isinstance(number, (str, int)) and str(number).strip() else ""
        refs = confirmed_references(where, batch, named)
        self._call("POST", "/v1/claims/release", key=f"{batch.batch_id}:release",
                   body={"external_ids": sorted(refs)}, ends_at=ends_at)
        return Receipt(batch_id=batch.batch_id, partner_reference=f"{self.partner_id}:{batch.batch_id}",
                       delivered_at=dt.datetime.now(dt.timezone.utc), detail=f"{len(refs)} claims created",
                       references=refs)

    def close(self) -> None:
        self.client.close()

    # -- per-claim operations ------------------------------------------------------------------
    def _post(self, op: Operation, path: str, body: dict[str, Any]) -> OperationResult:
        answer = self._call("POST", f"/v1/claims/{op.claim_id}/{path}", key=op.key, body=body)
        return OperationResult(detail=str(answer.get("file_number", "")) if isinstance(answer, dict) else "")

    def op_cancel(self, op: Operation) -> OperationResult:
        return self._post(op, "cancel", {"reason": op.data.get("reason", "")})

    def op_report_payment(self, op: Operation) -> OperationResult:
        return self._post(op, "payments", {k: op.data.get(k) for k in ("amount", "currency", "date")})

    def op_send_message(self, op: Operation) -> OperationResult:
        return self._post(op, "messages", {"message_id": op.data.get("message_id"), "text": op.data.get("text")})

    def op_request_monitoring(self, op: Operation) -> OperationResult:
        return self._post(op, "monitoring", {})

    def op_set_labels(self, op: Operation) -> OperationResult:
        return self._post(op, "labels", {"labels": list(op.data.get("labels", []))})

    def op_refresh(self, op: Operation) -> OperationResult:
        path = f"/v1/claims/{op.claim_id}"
        answer = self._call("GET", path)
        if not isinstance(answer, dict):
            raise self._malformed(f"partner {self.partner_id}: GET {path}", "not an object")
        return OperationResult(detail=str(answer.get("status", "")),
                               updates=self._updates(f"partner {self.partner_id}: GET {path}",
                                                     answer.get("events", [])))

    def _updates(self, where: str, events: Any) -> list[PartnerUpdate]:
        try:
            return updates_from(events)
        except msgspec.ValidationError as exc:  # names the field and index, never the value
            raise self._malformed(where, str(exc)) from None

    # -- status back -----------------------------------------------------------------------------
    def fetch_updates(self, cursor: str | None) -> UpdatePage:
        """The events feed after ``cursor``."""
        where = f"partner {self.partner_id}: GET /v1/events"
        answer = self._call("GET", "/v1/events", params={"after": cursor or "0"})
        if not isinstance(answer, dict) or not isinstance(answer.get("events"), list):
            raise self._malformed(where, "no list 'events'")
        following = answer.get("next")
        return UpdatePage(updates=self._updates(where, answer["events"]),
                          cursor=str(following) if isinstance(following, (str, int)) and following != "" else cursor)


def _error_code(content: bytes) -> str:
    """`` (code X)`` when the error body is JSON naming an error code that is a plain token, else nothing."""
    try:
        doc = json.loads(content)
    except ValueError:
        return ""
    code = next((safe_code(doc.get(k)) for k in ("code", "error_code", "errorCode") if isinstance(doc, dict)
                 and safe_code(doc.get(k))), None)
    return f" (code {code})" if code else ""


def _redirected(where: str, r: Answer) -> DeliveryError:
    """A redirect is not followed (the case file would go where the partner's server says). 301 and 308 say the
    API moved for good: dead at once, for the operator to check the URL. Others may be a maintenance detour."""
    try:
        target = httpx.URL(r.headers.get("location", ""))
        place = f"{target.scheme}://{target.host}" if target.host else "a path on the same host"
    except httpx.InvalidURL:
        place = "an invalid location"
    return DeliveryError(f"{where}: HTTP {r.status} redirects to {place}; redirects are not followed "
                         f"(check option url)", retryable=r.status not in (301, 308))

