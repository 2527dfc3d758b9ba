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
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import msgspec

from adapters.base import Batch, Operation, OperationResult, OperationsMixin, PartnerUpdate, Receipt, UpdatePage
from gateway.errors import ConfigError, DeliveryError

SIGNATURE_HEADER = "X-Signature-SHA256"
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
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
        if token_env and os.environ.get(str(token_env)):
            headers["Authorization"] = f"Bearer {os.environ[str(token_env)]}"
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers,
                                   timeout=float(options.get("timeout", 30.0)))

    def _call(self, method: str, path: str, *, key: str | None = None, body: Any = None,
              params: dict[str, str] | None = None) -> Any:
        headers = {"Idempotency-Key": key} if key else {}
        where = f"partner {self.partner_id}: {method} {path}"
        try:
            r = self.client.request(method, path, json=body, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"{where}: timed out ({type(exc).__name__})", retryable=True) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
        if r.status_code >= 400:
            raise DeliveryError(f"{where}: HTTP {r.status_code} {r.text[:200]}",
                                retryable=r.status_code in _RETRY_STATUS)
        return r.json() if r.content else None

    def deliver(self, batch: Batch) -> Receipt:
        """Create every claim of the batch (folded by key at the partner), then release them."""
        manifest = {"batch_id": batch.batch_id, "filename": batch.filename,
                    "document": base64.b64encode(batch.payload).decode(),
                    "claims": [{"external_id": c, "idempotency_key": batch.claim_key(c)} for c in batch.claim_ids]}
        created = self._call("POST", "/v1/claims", key=batch.batch_id, body=manifest)
        refs = {int(c["external_id"]): str(c["file_number"]) for c in created["claims"]}
        self._call("POST", "/v1/claims/release", key=f"{batch.batch_id}:release",
                   body={"external_ids": sorted(refs)})
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
        answer = self._call("GET", f"/v1/claims/{op.claim_id}")
        return OperationResult(detail=str(answer.get("status", "")),
                               updates=msgspec.convert(answer.get("events", []), list[PartnerUpdate]))

    # -- status back -----------------------------------------------------------------------------
    def fetch_updates(self, cursor: str | None) -> UpdatePage:
        """The events feed after ``cursor``."""
        answer = self._call("GET", "/v1/events", params={"after": cursor or "0"})
        return UpdatePage(updates=msgspec.convert(answer["events"], list[PartnerUpdate]),
                          cursor=answer.get("next") or cursor)
