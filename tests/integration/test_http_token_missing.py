"""An HTTP partner whose token the config names (``token_env``) but the gateway's environment does not hold.

Before, every call went out without ``Authorization``: a partner that checks it answered 401 and the batch was dead
at once as "the partner refused the gateway's credentials", the real cause unsaid; one that does not check took the
case files unauthenticated. Now nothing is sent: the attempt fails retryably naming the variable, the row waits,
and ``gateway partners test`` says the same. Against the real HTTP partner simulator on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.rest import HttpAdapter
from gateway.domain.lifecycle import State
from gateway.services.partner_check import _probe
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.contract.harness import deliver_demo_once, HttpHarness, claims_by_state, gateway_for, keys_template  # noqa: F401

VARIABLE = "GATEWAY_TEST_AGENCY_TOKEN_NOT_SET"


class _TokenHarness(HttpHarness):
    def options(self) -> dict[str, Any]:
        return {**super().options(), "token_env": VARIABLE}


def test_nothing_goes_out_without_the_token_the_config_names(tmp_path: Path, db_url: str, keys_template: Path,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    harness = _TokenHarness(tmp_path)
    try:
        with gateway_for(harness, tmp_path, db_url, keys_template) as app:
            deliver_demo_once(app)
            with read_tx(app.engine) as conn:
                [row] = [dict(r) for r in outbox_store.listing(conn)]
            assert row["status"] == "pending" and VARIABLE in row["last_error"]  # waits; says why
            assert State.HANDED_OVER not in claims_by_state(app)
    finally:
        harness.stop()
    assert harness.agency.batches == {} and sum(harness.agency.create_requests.values()) == 0


def test_the_connectivity_check_names_the_missing_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    adapter = HttpAdapter("p", {"url": "http://127.0.0.1:9", "token_env": VARIABLE})
    with pytest.raises(Exception, match=VARIABLE):
        _probe(adapter, {})
    monkeypatch.setenv(VARIABLE, "t0ken")
    assert HttpAdapter("p", {"url": "http://127.0.0.1:9", "token_env": VARIABLE}).missing_token is None
