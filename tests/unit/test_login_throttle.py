"""The login throttle: a login name blocked by someone's guessing does not lock out its owner at an address it
logged in from; the guesser, and every address never seen, stay blocked."""

from __future__ import annotations

from gateway.config import SoapLoginThrottle
from gateway.services.login_throttle import LoginThrottle


def test_a_blocked_name_lets_its_owner_in_where_it_logged_in_before() -> None:
    t = LoginThrottle(SoapLoginThrottle())
    t.succeeded("acme-sap", "10.0.0.2")
    for _ in range(10):
        t.failed(username="acme-sap", address="10.0.0.1")
    assert t.wait_for(username="acme-sap", address="10.0.0.1") > 800  # blocked for block_seconds (900)
    assert t.wait_for(username="acme-sap", address="10.0.0.9") > 800  # a stranger: the name's count applies
    assert t.wait_for(username="acme-sap", address="10.0.0.2") == 0  # the owner's address
    t.succeeded("acme-sap", "10.0.0.2")
    assert t.wait_for(username="acme-sap", address="10.0.0.1") > 800  # the owner's login does not free the guesser


def test_the_owners_address_is_throttled_for_its_own_failures() -> None:
    t = LoginThrottle(SoapLoginThrottle())
    t.succeeded("acme-sap", "10.0.0.2")
    for _ in range(10):
        t.failed(username="acme-sap", address="10.0.0.2")
    assert t.wait_for(username="acme-sap", address="10.0.0.2") > 800
