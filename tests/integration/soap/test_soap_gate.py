"""The request gate's busy answer and the internal-error fault, driven deterministically."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest
import zeep

from gateway.bootstrap import App
from gateway.entrypoints.soap.app import RequestGate
from gateway.services import claim_queries
from tests.integration.soap.conftest import PASSWORDS, Endpoint

BODY = b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>'


def _environ() -> dict[str, Any]:
    token = base64.b64encode(f"demo-erp:{PASSWORDS['demo-erp']}".encode()).decode()
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/soap", "CONTENT_LENGTH": str(len(BODY)),
            "wsgi.input": io.BytesIO(BODY), "HTTP_AUTHORIZATION": f"Basic {token}", "CONTENT_TYPE": "text/xml"}


def test_requests_beyond_the_inflight_limit_get_server_busy(soap_app: App) -> None:
    soap_app.config.soap = msgspec.structs.replace(soap_app.config.soap, max_inflight=1, busy_wait_seconds=0.05)
    inside, release = threading.Event(), threading.Event()

    def slow(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        inside.set()
        release.wait(30)
        start_response("200 OK", [])
        return [b"done"]

    gate = RequestGate(slow, soap_app)  # type: ignore[arg-type]
    first: list[bytes] = []
    worker = threading.Thread(target=lambda: first.extend(gate(_environ(), lambda *a: None)))
    worker.start()
    try:
        assert inside.wait(30)
        statuses: list[str] = []
        body = b"".join(gate(_environ(), lambda status, headers: statuses.append(status)))
        assert statuses == ["503 Service Unavailable"] and b"Server.Busy" in body
    finally:
        release.set()
        worker.join(30)
    assert first == [b"done"]
    statuses.clear()
    gate(_environ(), lambda status, headers: statuses.append(status))
    assert statuses == ["200 OK"]  # the slot was given back


def test_an_unexpected_error_is_an_internal_fault_with_an_incident(endpoint: Endpoint,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(claim_queries, "changes", boom)
    with pytest.raises(zeep.exceptions.Fault) as exc:
        endpoint.client().service.GetChanges(0)
    assert exc.value.code == "soap11env:Server.Internal"
    assert "incident" in exc.value.message and "secret" not in exc.value.message
