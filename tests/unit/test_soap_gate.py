"""Credential hashing and the XML gate, without a server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.entrypoints.soap.app import refusal
from gateway.entrypoints.soap.auth import TokenError, basic_credentials, username_token


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
    with pytest.raises(TokenError, match="PasswordDigest is not supported"):
        username_token(body.replace(b"#PasswordText", b"#PasswordDigest"))
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


def test_configured_credentials_are_checked_at_start(tmp_path: Path) -> None:
    from gateway.config import load_config
    from gateway.entrypoints.soap.auth import Authenticator
    from gateway.errors import ConfigError

    cfg = tmp_path / "gateway.yaml"
    cfg.write_text("clients:\n  a:\n    soap: {username: erp, password_hash: hunter2}\n")
    with pytest.raises(ConfigError, match=r"clients\.a\.soap\.password_hash"):
        Authenticator(load_config(cfg))
