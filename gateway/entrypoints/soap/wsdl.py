"""The WSDL of the SOAP contract, in a stable form for ``schemas/gateway-soap-v1.wsdl``.

spyne emits schema types in hash order and the address of whoever asked; ``normalize`` sorts the
types by name and fixes the address, so the committed file only changes when the contract does.
Regenerate it with ``python -m gateway.entrypoints.soap.wsdl > schemas/gateway-soap-v1.wsdl``, and the v2
contract with ``python -m gateway.entrypoints.soap.wsdl v2 > schemas/gateway-soap-v2.wsdl``.
"""

from __future__ import annotations

import sys
from typing import Any

from lxml import etree

from gateway.entrypoints.soap.app import PATH

ADDRESS = f"https://localhost:8443{PATH}"
_XS = "{http://www.w3.org/2001/XMLSchema}"
_SOAP = "{http://schemas.xmlsoap.org/wsdl/soap/}"
_PARSER = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, remove_blank_text=True)


def normalize(wsdl: bytes, address: str = ADDRESS) -> str:
    """The WSDL with schema children sorted by kind and name and the service address fixed."""
    root = etree.fromstring(wsdl, _PARSER)
    for schema in root.iter(f"{_XS}schema"):
        children = sorted(schema, key=lambda e: (str(e.tag), e.get("name") or e.get("namespace") or ""))
        for child in children:
            schema.remove(child)
        schema.extend(children)
    for element in root.iter(f"{_SOAP}address"):
        element.set("location", address)
    text: str = etree.tostring(root, pretty_print=True, encoding="unicode")
    return text


def generate(version: str = "v1") -> str:
    """The normalized WSDL of the current code (``v1`` or ``v2``), without a server or a database."""
    from spyne.interface.wsdl import Wsdl11
    from spyne.server.wsgi import WsgiApplication

    from gateway.entrypoints.soap.app import build_application, build_application_v2

    build = build_application_v2 if version == "v2" else build_application
    address = ADDRESS + ("/v2" if version == "v2" else "")
    application: Any = build(None)  # type: ignore[arg-type]  # the WSDL needs no gateway app
    WsgiApplication(application)  # sets the HTTP transport the WSDL binding names
    doc = Wsdl11(application.interface)
    doc.build_interface_document(address)
    return normalize(doc.get_interface_document(), address)


if __name__ == "__main__":
    sys.stdout.write(generate(sys.argv[1] if len(sys.argv) > 1 else "v1"))
