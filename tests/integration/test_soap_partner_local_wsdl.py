"""A SOAP partner whose WSDL the operator keeps as a local file (``wsdl: file:///etc/...``), as many agencies
hand theirs out: zeep reads ``file://`` through its own session, and the bounded transport of d359228 sent it
to the HTTP exchange instead, which knows no ``file://``: every call failed (retryably, for ever) with
UnsupportedProtocol. The calls themselves still go to the service address over the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.soap import SoapAdapter
from adapters.soap_wsdl import wsdl
from tests.integration.hostile_http import Conn, HostileServer, Request
from tests.integration.test_partner_hostile_soap import CREATED, batch


@pytest.mark.parametrize("as_url", [True, False], ids=["file-url", "path"])
def test_a_local_wsdl_file_is_read_and_the_partner_called(tmp_path: Path, as_url: bool) -> None:
    def behave(req: Request, conn: Conn) -> None:
        conn.answer(200, CREATED, content_type="text/xml")

    with HostileServer(behave) as server:
        local = tmp_path / "partner.wsdl"
        local.write_text(wsdl(f"{server.url}/soap"), encoding="utf-8")
        a = SoapAdapter("p", {"wsdl": local.as_uri() if as_url else str(local), "timeout": 2.0, "deadline": 5})
        receipt = a.deliver(batch())
        a.close()
    assert receipt.references == {1: "AZ-1"}
    assert [r.method for r in server.requests] == ["POST"]
