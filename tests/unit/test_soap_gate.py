"""Credential hashing and the XML gate, without a server."""

from __future__ import annotations

import base64

import pytest

from gateway.entrypoints.soap.app import refusal
from gateway.entrypoints.soap.auth import basic_credentials, hash_password, username_token, verify_password


def test_scrypt_hash_verifies_only_the_right_password() -> None:
    stored = hash_password("correct horse battery", n=2 ** 10)
    assert stored.startswith("scrypt$1024$8$1$")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert stored != hash_password("correct horse battery", n=2 ** 10)  # salted
    assert not verify_password("x", "md5$abc") and not verify_password("x", "garbage")


def test_basic_header() -> None:
    token = base64.b64encode("erp:pä:ss".encode()).decode()
    assert basic_credentials(f"Basic {token}") == ("erp", "pä:ss")
    assert basic_credentials("basic " + token) == ("erp", "pä:ss")
    assert basic_credentials(None) is None
    assert basic_credentials("Basic ###") is None


def test_username_token_text_only() -> None:
    body = b"""<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>
      <w:Security xmlns:w="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <w:UsernameToken><w:Username> erp </w:Username><w:Password Type="...#PasswordText">pw</w:Password>
      </w:UsernameToken></w:Security></s:Header><s:Body/></s:Envelope>"""
    assert username_token(body) == ("erp", "pw")
    assert username_token(body.replace(b"#PasswordText", b"#PasswordDigest")) is None
    assert username_token(b"<a>UsernameToken</a>") is None


@pytest.mark.parametrize("body, reason", [
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a/>', "DTDs"),
    (b"<a><!ENTITY x 'y'></a>", "DTDs"),
    (b"<a><!doctype a></a>", "DTDs"),
    ("<a/>".encode("utf-16"), "UTF-8"),
    (b'<?xml version="1.0" encoding="UTF-7"?><a/>', "encoding"),
    (b"\x4c\x6f\xa7\x94", "not XML"),  # EBCDIC '<?xm'
    (b"", "not XML"),
])
def test_refused_bodies(body: bytes, reason: str) -> None:
    assert reason in (refusal(body) or "")


def test_accepted_bodies() -> None:
    assert refusal(b'\xef\xbb\xbf<?xml version="1.0" encoding="ISO-8859-1"?>\n<a>&amp;</a>') is None
    assert refusal(b"  \n<s:Envelope/>") is None
