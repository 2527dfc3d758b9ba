"""ISO-8859-1 (Latin-1), the charset many Java and older ERP HTTP stacks put into every Content-Type, is taken like
Windows-1252: in the header, in the XML declaration, or both; an ASCII body labelled so is taken as it is."""

from __future__ import annotations

import pytest

from tests.integration.soap.conftest import Endpoint
from tests.integration.soap.test_soap_hostile_bodies import _VALID, _envelope, _raw


@pytest.mark.parametrize(("ref", "content_type", "declaration"), [
    ("L1-1", "text/xml; charset=ISO-8859-1", ""),
    ("L1-2", "text/xml", '<?xml version="1.0" encoding="ISO-8859-1"?>'),
    ("L1-3", "text/xml; charset=iso-8859-1", '<?xml version="1.0" encoding="iso-8859-1"?>'),
])
def test_latin1_is_taken_and_stored_as_the_characters_sent(endpoint: Endpoint, ref: str, content_type: str,
                                                             declaration: str) -> None:
    name = "M\u00fcller-\u00c9lise"
    body = (declaration + _envelope(_VALID.format(ref=ref, name=name)).decode()).encode("latin-1")
    status, text = _raw(endpoint, body, content_type)
    assert status == 200 and "<tns:outcome>accepted</tns:outcome>" in text, text
    assert endpoint.client().service.GetClaimByReference(ref).claim.debtor.last_name == name


def test_an_ascii_body_labelled_latin1_is_taken(endpoint: Endpoint) -> None:
    status, text = _raw(endpoint, _envelope("<g:GetClaim><g:claim_id>424242</g:claim_id></g:GetClaim>"),
                        "text/xml; charset=ISO-8859-1")
    assert "Client.UnknownClaim" in text, (status, text)
