"""SOAP ``CheckCredit`` over HTTPS with zeep, against the loopback bureau simulators (one of them down): the
traffic light with per-bureau reasons, the audit row naming the SOAP user, refusals under stable fault codes,
and one client never reading another's check from the cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zeep

from adapters.bureaus.simulators.book import Fault
from adapters.bureaus.simulators.http_sim import HttpBureauSimulator
from gateway.services import credit
from tests.integration.soap.conftest import Endpoint, client_config, serving
from tests.integration.test_credit import credit_config, sims  # noqa: F401 - the simulators fixture

SUBJECT = {"first_name": "Vera", "last_name": "Vollstreckt", "birth_date": "1966-02-03", "postal_code": "50667",
           "city": "Köln"}


@pytest.fixture
def endpoint(tmp_path: Path, db_url: str, sims: dict[str, HttpBureauSimulator]) -> Iterator[Endpoint]:  # noqa: F811
    cfg = credit_config(sims, max_checks_per_hour=3)
    clients = client_config()
    clients["demo"]["credit"] = cfg["clients"]["demo"]["credit"]
    clients["other"]["credit"] = {"bureaus": ["json"]}
    with serving(tmp_path, db_url, clients=clients, bureaus=cfg["bureaus"], soap={"threads": 4}) as ep:
        yield ep


def test_check_credit_over_soap(endpoint: Endpoint, sims: dict[str, HttpBureauSimulator]) -> None:  # noqa: F811
    sims["third"].set_fault(Fault.DOWN)
    demo = endpoint.client()
    r = demo.service.CheckCredit(subject=SUBJECT, interest="contract_initiation", user="praxis-empfang")
    assert (r.colour, r.incomplete, r.cached) == ("red", True, False)
    answers = {b.bureau: b for b in r.bureaus.CreditBureauAnswer}
    assert answers["soap"].status == "answered" and answers["soap"].found is True
    assert [x.code for x in answers["soap"].reasons.CreditReason] == ["hard_entry", "score_low"]
    assert answers["soap"].entries.CreditEntry[0].kind == "enforcement"
    assert answers["third"].status == "error" and answers["third"].error.startswith("unavailable")
    again = demo.service.CheckCredit(subject=SUBJECT, interest="claim_collection", user="praxis-empfang")
    assert again.cached is False  # incomplete answers are not reused by default
    sims["third"].set_fault(Fault.NONE)
    [row, second] = credit.audit_log(endpoint.app, "demo")
    assert (row["channel"], row["requested_by"], row["interest"]) == ("soap", "demo-erp: praxis-empfang",
                                                                      "contract_initiation")
    # another client: its own query, never demo's cached answer, and its own audit log
    other = endpoint.client("other-erp").service.CheckCredit(subject=SUBJECT, interest="contract_initiation",
                                                              user="x")
    assert other.cached is False and other.check_id not in (r.check_id, again.check_id)
    assert [x["check_id"] for x in credit.audit_log(endpoint.app, "other")] == [other.check_id]


def test_refusals_keep_stable_fault_codes(endpoint: Endpoint) -> None:
    demo = endpoint.client()
    with pytest.raises(zeep.exceptions.Fault) as fault:
        demo.service.CheckCredit(subject={**SUBJECT, "birth_date": None}, interest="contract_initiation", user="u")
    assert fault.value.code.endswith("Client.Validation") and "subject" in fault.value.message
    with pytest.raises(zeep.exceptions.Fault) as fault:
        endpoint.client("viewer").service.CheckCredit(subject=SUBJECT, interest="contract_initiation", user="u")
    assert fault.value.code.endswith("Client.Authorization")
    for _ in range(3):
        demo.service.CheckCredit(subject=SUBJECT, interest="contract_initiation", user="u")
    with pytest.raises(zeep.exceptions.Fault) as fault:
        demo.service.CheckCredit(subject=SUBJECT, interest="contract_initiation", user="u")
    assert fault.value.code.endswith("Client.Throttled") and "rate_limited" in fault.value.message


def test_the_login_is_recorded_from_the_gate_never_from_the_request(endpoint: Endpoint) -> None:
    from zeep.transports import Transport
    from zeep.wsse.username import UsernameToken

    from tests.integration.soap.conftest import PASSWORDS
    demo = endpoint.client()
    plain = demo.service.CheckCredit(subject=SUBJECT, interest="contract_initiation")  # user left out
    posing = demo.service.CheckCredit(subject=SUBJECT, interest="contract_initiation", user="  other-erp ")
    token = zeep.Client(endpoint.url + "?wsdl", transport=Transport(session=endpoint.session(None)),
                        wsse=UsernameToken("demo-erp", PASSWORDS["demo-erp"]))
    by_token = token.service.CheckCredit(subject=SUBJECT, interest="claim_collection", user="")
    rows = {r["check_id"]: r["requested_by"] for r in credit.audit_log(endpoint.app, "demo")}
    assert rows == {plain.check_id: "demo-erp", posing.check_id: "demo-erp: other-erp",
                    by_token.check_id: "demo-erp"}
