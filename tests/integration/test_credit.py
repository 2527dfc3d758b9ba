"""Credit checks end to end through the use case: real loopback HTTP/JSON and SOAP bureau simulators (zeep,
httpx), with the faults injected for real (a slow answer, a closed listener, garbage), the guard rails
(interest, rate limit, cache), isolation between clients, the link to a later claim, the sealed storage and
the audit log, on SQLite and PostgreSQL. No timing is asserted: a slow bureau is one slower than its budget."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import delete, select

from adapters.bureaus.simulators.book import BureauBook, Fault
from adapters.bureaus.simulators.http_sim import HttpBureauSimulator
from adapters.bureaus.simulators.soap_sim import SoapBureauSimulator
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.domain.credit import Subject, SubjectKind
from gateway.errors import NotFound
from gateway.services import credit, submit
from gateway.services.keys import init_keys
from gateway.store import credit_checks
from gateway.store.db import read_tx, write_tx
from tests.conftest import PG_URL, _pg_schema_url, write_config
from tests.factories import make_claim

PLANTED_FIRST, PLANTED_LAST, PLANTED_STREET = "Zacharias", "Quetzalwurm", "Xylophonweg"


def person(first: str, last: str, **kw: Any) -> Subject:
    return Subject(first_name=first, last_name=last, birth_date=date(1971, 4, 23), street="Hauptstr.",
                   house_number="1", postal_code="50667", city="Köln", **kw)


def start_sims() -> dict[str, HttpBureauSimulator]:
    return {"json": HttpBureauSimulator(BureauBook()).start(), "soap": SoapBureauSimulator(BureauBook()).start(),
            "third": HttpBureauSimulator(BureauBook()).start()}


@pytest.fixture
def sims() -> Iterator[dict[str, HttpBureauSimulator]]:
    """Three fresh simulators (for other modules' tests)."""
    started = start_sims()
    yield started
    for sim in started.values():
        sim.stop()


def credit_config(sims: dict[str, HttpBureauSimulator], **client: Any) -> dict[str, Any]:
    bureaus = {"json": {"adapter": "http_json", "options": {"url": sims["json"].url}, "timeout_seconds": 0.8},
               "soap": {"adapter": "soap", "options": {"wsdl": f"{sims['soap'].url}/soap?wsdl"},
                        "timeout_seconds": 0.8},
               "third": {"adapter": "http_json", "options": {"url": sims["third"].url}, "timeout_seconds": 0.8}}
    settings = {"bureaus": ["json", "soap", "third"], "max_checks_per_hour": 50, **client}
    return {"bureaus": bureaus,
            "clients": {"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
                                 "credit": settings},
                        "other": {"name": "Other", "mapping": "demo", "default_partner": "demo-agency",
                                  "credit": {"bureaus": ["json"]}},
                        "strict": {"name": "Strict", "mapping": "demo", "default_partner": "demo-agency",
                                   "credit": {"bureaus": ["json"], "max_checks_per_hour": 2,
                                              "interests": ["contract_initiation"]}}}}


def make_app(tmp_path: Path, db_url: str, sims: dict[str, HttpBureauSimulator], **client: Any) -> App:
    path = write_config(tmp_path, db_url, **credit_config(sims, **client))
    init_keys(load_config(path))
    return build_app(path, migrate=True)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def env(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, dict[str, HttpBureauSimulator], str]]:
    """One gateway and three simulators per module and database (keys and schema cost ~2 s to make)."""
    base = tmp_path_factory.mktemp("credit")
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("GATEWAY_TEST_PG_URL not set: PostgreSQL run skipped (CI sets it)")
    urls = iter([f"sqlite:///{base / 'var' / 'gateway.db'}"]) if request.param == "sqlite" else _pg_schema_url()
    url = next(urls)
    started = start_sims()
    application = make_app(base, url, started)
    try:
        yield application, started, url
    finally:
        application.close()
        for sim in started.values():
            sim.stop()
        for _ in urls:  # drops the PostgreSQL schema
            pass


@pytest.fixture
def live(env: tuple[App, dict[str, HttpBureauSimulator], str]) -> dict[str, HttpBureauSimulator]:
    """The module's simulators, healthy, their counters at zero."""
    for sim in env[1].values():
        sim.set_fault(Fault.NONE)
        sim.book.queries = 0
        sim.book.purposes.clear()
    return env[1]


@pytest.fixture
def app(env: tuple[App, dict[str, HttpBureauSimulator], str], live: dict[str, HttpBureauSimulator]) -> App:
    """The module's gateway without any stored check (each test starts with an empty cache and audit log)."""
    with write_tx(env[0].engine) as conn:
        conn.execute(delete(credit_checks.credit_checks))
    return env[0]


def check(app: App, subject: Subject, client: str = "demo", interest: str = "contract_initiation",
          user: str = "alice") -> credit.CreditAnswer:
    return credit.check_credit(app, client, subject, interest=interest, user=user, channel="cli")


def claim_id_of(result: submit.SubmitResult) -> int:
    claim_id = result.results[0].claim_id
    assert claim_id is not None, result.results[0]
    return claim_id


def reasons(answer: credit.CreditAnswer) -> dict[str, list[str]]:
    assert answer.verdict is not None
    return {b.bureau: [r.code for r in b.reasons] for b in answer.verdict.bureaus}


def test_each_colour_through_json_and_soap_bureaus(app: App, live: dict[str, HttpBureauSimulator]) -> None:
    green = check(app, person("Erika", "Mustermann"))
    assert (green.colour, green.incomplete, green.cached) == ("green", False, False)
    assert reasons(green) == {b: ["score_ok"] for b in ("json", "soap", "third")}
    red = check(app, person("Paul", "Pleite"))
    assert red.colour == "red" and reasons(red)["soap"] == ["hard_entry", "score_low"]
    assert [e.kind for o in red.outcomes for e in (o.result.entries if o.result else [])] == ["insolvency"] * 3
    soft = check(app, person("Sabine", "Säumig"))
    assert soft.colour == "yellow" and reasons(soft)["json"] == ["soft_entry", "score_ok"]
    unknown = check(app, person("Nie", "Gehört"))
    assert unknown.colour == "yellow" and reasons(unknown) == {b: ["unknown_person"] for b in ("json", "soap", "third")}
    company = check(app, Subject(kind=SubjectKind.BUSINESS, company="Musterbau GmbH", postal_code="10115",
                                 city="Berlin"))
    assert company.colour == "green"
    # the stated interest reached the bureaus (they record why they were asked)
    assert set(live["soap"].book.purposes) == {"contract_initiation"}


def test_one_slow_one_down_answers_from_the_rest_marked_incomplete(app: App,
                                                                   live: dict[str, HttpBureauSimulator]) -> None:
    live["json"].set_fault(Fault.SLOW, delay_seconds=3.0)
    live["third"].set_fault(Fault.DOWN)
    answer = check(app, person("Paul", "Pleite"))
    assert answer.incomplete and answer.colour == "red"  # the SOAP bureau's insolvency entry
    status = {o.bureau: (o.status, (o.error or "").split(":")[0]) for o in answer.outcomes}
    assert status == {"json": ("timeout", "timeout"), "soap": ("answered", ""), "third": ("error", "unavailable")}
    assert reasons(answer)["json"] == ["no_answer"]


def test_garbage_and_server_errors_are_that_bureau_s_error_only(app: App,
                                                                 live: dict[str, HttpBureauSimulator]) -> None:
    live["json"].set_fault(Fault.GARBAGE)
    live["soap"].set_fault(Fault.GARBAGE)
    live["third"].set_fault(Fault.ERROR)
    answer = check(app, person("Erika", "Mustermann"))
    assert answer.incomplete and answer.colour == "yellow"  # nobody answered: nothing known is not green
    assert {o.bureau: (o.error or "").split(":")[0] for o in answer.outcomes} == {
        "json": "invalid_answer", "soap": "invalid_answer", "third": "unavailable"}
    assert live["json"].book.queries == 1  # garbage is not retried (503 would be, within the budget)


def test_soap_bureau_down_then_back(app: App, live: dict[str, HttpBureauSimulator]) -> None:
    live["soap"].set_fault(Fault.DOWN)  # listener closed, open keep-alive connections cut
    first = check(app, person("Erika", "Mustermann"))
    assert {o.bureau: o.status for o in first.outcomes}["soap"] == "error" and first.colour == "green"
    live["soap"].set_fault(Fault.NONE)
    second = check(app, person("Max", "Mustermann"))
    assert {o.bureau: o.status for o in second.outcomes}["soap"] == "answered" and second.colour == "yellow"


def test_cache_answers_the_same_subject_without_a_paid_query(app: App,
                                                             live: dict[str, HttpBureauSimulator]) -> None:
    first = check(app, person("Erika", "Mustermann"))
    again = check(app, person(" erika ", "MUSTERMANN"), interest="claim_collection", user="bob")
    assert again.cached and again.source_check_id == first.check_id and again.colour == "green"
    assert again.subject is not None and again.subject.last_name == "Mustermann"
    assert [s.book.queries for s in live.values()] == [1, 1, 1]
    # an incomplete answer is not given again (incomplete_cache_seconds 0): the missing bureau is asked
    live["json"].set_fault(Fault.ERROR)
    check(app, person("Max", "Mustermann"))
    live["json"].set_fault(Fault.NONE)
    retried = check(app, person("Max", "Mustermann"))
    assert not retried.cached and not retried.incomplete
    # another birth date is another person
    assert not check(app, msgspec.structs.replace(person("Erika", "Mustermann"), birth_date=date(1990, 1, 1))).cached


def test_guard_rails_interest_user_subject_and_rate_limit(app: App, live: dict[str, HttpBureauSimulator]) -> None:
    def strict(subject: Subject, **kw: Any) -> credit.CreditAnswer:
        return check(app, subject, client="strict", **kw)
    with pytest.raises(credit.CreditRefused) as refused:
        strict(person("Erika", "Mustermann"), interest="claim_collection")
    assert refused.value.code == "interest"
    with pytest.raises(credit.CreditRefused) as refused:
        strict(person("Erika", "Mustermann"), user="  ")
    assert refused.value.code == "user"
    with pytest.raises(credit.CreditRefused) as refused:
        strict(msgspec.structs.replace(person("Erika", "Mustermann"), birth_date=None, city=None))
    assert (refused.value.code, refused.value.fields) == ("subject", ["birth_date", "city"])
    strict(person("Erika", "Mustermann"))
    strict(person("Erika", "Mustermann"))  # cached, but counted
    with pytest.raises(credit.CreditRefused) as refused:
        strict(person("Max", "Mustermann"))
    assert refused.value.code == "rate_limited"
    assert live["json"].book.queries == 1
    log = credit.audit_log(app, "strict")
    assert [r["outcome"] for r in log] == ["queried", "cached", "refused"]
    assert log[2]["subject"] == "" and log[2]["colour"] is None  # a refused subject is not kept
    assert check(app, person("Max", "Mustermann")).colour == "yellow"  # the limit is the client's own


def test_a_client_never_sees_another_client_s_checks(app: App, live: dict[str, HttpBureauSimulator]) -> None:
    mine = check(app, person("Erika", "Mustermann"))
    theirs = check(app, person("Erika", "Mustermann"), client="other")
    assert not theirs.cached  # the cache is per client: the other client's query is its own
    assert credit.get_check(app, "demo", mine.check_id).colour == "green"
    with pytest.raises(NotFound):
        credit.get_check(app, "other", mine.check_id)
    assert [r["check_id"] for r in credit.audit_log(app, "other")] == [theirs.check_id]
    assert [r["check_id"] for r in credit.audit_log(app, "demo")] == [mine.check_id]


def test_linked_to_a_later_claim_of_the_same_debtor(app: App) -> None:
    answer = check(app, person("Jürgen", "Müller"))  # make_claim's debtor
    check(app, person("Erika", "Mustermann"))
    other = check(app, person("Jürgen", "Müller"), client="other")
    ids = {}
    for client in ("demo", "other"):
        claim = msgspec.structs.replace(make_claim("R-7"), client_id=client)
        result = submit.submit_claims(app, client, [submit.Draft(reference="R-7", claim=claim)])
        ids[client] = claim_id_of(result)
    linked = credit.checks_for_claim(app, "demo", ids["demo"])
    assert [s.check_id for s in linked] == [answer.check_id]
    assert [s.check_id for s in credit.checks_for_claim(app, "other", ids["other"])] == [other.check_id]
    assert credit.checks_for_claim(app, "other", ids["demo"]) == []  # not even by claim id


def test_sealed_at_rest_and_never_in_logs(app: App, live: dict[str, HttpBureauSimulator],
                                          caplog: pytest.LogCaptureFixture,
                                          env: tuple[App, dict[str, HttpBureauSimulator], str]) -> None:
    db_url = env[2]
    caplog.set_level(logging.DEBUG)
    live["third"].set_fault(Fault.GARBAGE)
    live["json"].set_fault(Fault.SLOW, delay_seconds=2.0)
    planted = Subject(first_name=PLANTED_FIRST, last_name=PLANTED_LAST, birth_date=date(1962, 4, 23),
                      street=PLANTED_STREET, postal_code="50667", city="Köln")
    answer = check(app, planted)
    check(app, planted)  # cached
    live["json"].set_fault(Fault.NONE)
    credit.audit_log(app, "demo")
    with read_tx(app.engine) as conn:
        rows = list(conn.execute(select(credit_checks.credit_checks)).mappings())
    stored = repr([{k: v for k, v in r.items() if k != "personal"} for r in rows]).encode() + b"".join(
        bytes(r["personal"] or b"") for r in rows)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for value in (PLANTED_FIRST, PLANTED_LAST, PLANTED_STREET, "1962-04-23"):
        assert value not in logged and value.encode() not in stored
    if db_url.startswith("sqlite"):
        db = Path(db_url.removeprefix("sqlite:///"))
        for path in (db, Path(f"{db}-wal")):
            if path.exists():
                assert PLANTED_LAST.encode() not in path.read_bytes()
    assert credit.get_check(app, "demo", answer.check_id).subject == planted
    assert f"check={answer.check_id}" in caplog.text  # the check is logged, by id


def test_erasure_keeps_the_audit_row_and_ends_the_cache(app: App, live: dict[str, HttpBureauSimulator]) -> None:
    first = check(app, person("Erika", "Mustermann"))
    cached = check(app, person("Erika", "Mustermann"))
    other = check(app, person("Erika", "Mustermann"), client="other")
    assert credit.erase_checks(app, "demo", subject_name="erika  MUSTERMANN") == 1
    assert credit.get_check(app, "demo", cached.check_id).subject is None
    log = credit.audit_log(app, "demo")
    assert [(r["check_id"], r["subject"], r["colour"]) for r in log] == [
        (first.check_id, "[erased]", "green"), (cached.check_id, "[erased]", "green")]
    assert not check(app, person("Erika", "Mustermann")).cached  # nothing left to repeat: asked again
    assert credit.get_check(app, "other", other.check_id).subject is not None  # another client's stays
    assert credit.erase_checks(app, "other", check_id=other.check_id) == 1
    assert credit.erase_checks(app, "other", check_id=other.check_id) == 0


def test_erasing_a_debtor_s_claims_erases_their_checks_at_that_client(app: App,
                                                                     live: dict[str, HttpBureauSimulator]) -> None:
    from gateway.services import erasure
    vera = person("Vera", "Vollstreckt")
    first, cached, other = check(app, vera), check(app, vera), check(app, vera, client="other")
    bystander = check(app, person("Erika", "Mustermann"))
    claim = msgspec.structs.replace(make_claim("R-ERASE"), client_id="demo",
                                    debtor=msgspec.structs.replace(make_claim().debtor, first_name="Vera",
                                                                   last_name="Vollstreckt"))
    cid = claim_id_of(submit.submit_claims(app, "demo", [submit.Draft(reference="R-ERASE", claim=claim)]))
    assert [s.check_id for s in credit.checks_for_claim(app, "demo", cid)] == [cached.check_id, first.check_id]
    ids = erasure.find(app, client_id="demo", debtor_name="vera  VOLLSTRECKT")
    report = erasure.erase(app, ids, "Art. 17 request", by="tester")
    assert report.erased == [cid] and report.credit_checks == 1  # the cached row holds no data of its own
    subjects = {r["check_id"]: (r["subject"], r["colour"], r["requested_by"]) for r in credit.audit_log(app, "demo")}
    assert subjects[first.check_id] == subjects[cached.check_id] == ("[erased]", "red", "alice")  # audit stays
    assert subjects[bystander.check_id][0] == "Erika Mustermann"
    assert credit.get_check(app, "other", other.check_id).subject == vera  # another client's check stays
    asked = live["json"].book.asked.get("vera vollstreckt", 0)
    assert not check(app, vera).cached  # the cache has nothing left: asked again
    assert live["json"].book.asked["vera vollstreckt"] == asked + 1
    assert erasure.erase(app, ids, "again", by="tester").credit_checks == 0  # the claim's index is gone


def test_retention_erases_old_checks_and_keeps_their_audit_rows(app: App, live: dict[str, HttpBureauSimulator],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import timedelta

    from gateway.entrypoints.cli import main
    from gateway.services import erasure
    old, recent = check(app, person("Erika", "Mustermann")), check(app, person("Max", "Mustermann"))
    old_other = check(app, person("Erika", "Mustermann"), client="other")
    c = credit_checks.credit_checks.c
    with write_tx(app.engine) as conn:
        for check_id, days in ((old.check_id, 400), (recent.check_id, 10), (old_other.check_id, 400)):
            conn.execute(credit_checks.credit_checks.update().where(c.id == check_id)
                         .values(created_at=app.now() - timedelta(days=days)))
    assert main(["--config", app.config.source, "retention", "run"]) == 0  # the default: 365 days
    out = capsys.readouterr().out
    assert "demo: 0 claim(s) erased, 0 raw file(s) deleted, 1 credit check(s) erased" in out
    assert "other: 0 claim(s) erased, 0 raw file(s) deleted, 1 credit check(s) erased" in out
    rows = {r["check_id"]: r for r in credit.audit_log(app, "demo")}
    assert (rows[old.check_id]["subject"], rows[old.check_id]["colour"]) == ("[erased]", "green")  # audit stays
    assert rows[recent.check_id]["subject"] == "Max Mustermann"
    assert credit.get_check(app, "other", old_other.check_id).subject is None
    assert not check(app, person("Erika", "Mustermann")).cached  # an erased answer is never given again
    demo = app.config.clients["demo"].credit
    assert demo is not None
    try:
        app.config.credit.retention_days = None  # keep until erased by hand ...
        assert erasure.run_retention(app).credit_checks == {}
        demo.retention_days = 5  # ... but the client's own period wins
        assert erasure.run_retention(app).credit_checks == {"demo": 1}
        assert credit.get_check(app, "demo", recent.check_id).subject is None
    finally:
        app.config.credit.retention_days, demo.retention_days = 365, None


def test_retention_periods_are_checked_at_start(tmp_path: Path) -> None:
    from gateway.errors import ConfigError
    fake = {"json": type("S", (), {"url": "http://127.0.0.1:9"})(), "soap": type("S", (), {"url": "http://x"})(),
            "third": type("S", (), {"url": "http://127.0.0.1:9"})()}  # only their urls are read: no network
    doc = credit_config(fake, retention_days=0)
    with pytest.raises(ConfigError, match="retention_days") as bad:
        load_config(write_config(tmp_path, "sqlite:///x.db", **doc))
    assert "clients.demo.credit.retention_days" in str(bad.value)
    doc = credit_config(fake, retention_days=30)
    with pytest.raises(ConfigError, match=r"credit\.retention_days"):
        load_config(write_config(tmp_path, "sqlite:///x.db", credit={"retention_days": -1}, **doc))
    cfg = load_config(write_config(tmp_path, "sqlite:///x.db", credit={"retention_days": None}, **doc))
    assert cfg.credit.retention_days is None and cfg.clients["demo"].credit.retention_days == 30  # type: ignore[union-attr]


def test_identical_concurrent_checks_pay_once(app: App, live: dict[str, HttpBureauSimulator]) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor
    for sim in live.values():  # each bureau answers within its budget, slowly enough for the requests to meet
        sim.set_fault(Fault.SLOW, delay_seconds=0.3)
    start = threading.Barrier(4)

    def ask(subject: Subject) -> credit.CreditAnswer:
        start.wait(timeout=5)
        return check(app, subject)

    with ThreadPoolExecutor(4) as pool:
        # names no other test asks: a slow answer another test left behind cannot count here
        same = [pool.submit(ask, person("Gleich", "Zeitig")) for _ in range(3)]
        other = pool.submit(ask, person("Anders", "Zeitig"))  # another subject is not held up by the flight
        answers = [f.result(timeout=10) for f in same]
        assert not other.result(timeout=10).cached
    paid = [a for a in answers if not a.cached]
    assert len(paid) == 1 and not paid[0].incomplete
    assert all(a.source_check_id == paid[0].check_id and a.colour == paid[0].colour for a in answers if a.cached)
    assert {name: sim.book.asked.get("gleich zeitig") for name, sim in live.items()} == {
        "json": 1, "soap": 1, "third": 1}
    assert {name: sim.book.asked.get("anders zeitig") for name, sim in live.items()} == {
        "json": 1, "soap": 1, "third": 1}
    assert not credit._FLIGHTS  # every flight let go


def test_metrics_count_by_bureau_result_and_cache_hits_without_subject_data(
        app: App, live: dict[str, HttpBureauSimulator]) -> None:
    from prometheus_client import generate_latest

    from gateway.metrics import REGISTRY, Exposition

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(f"{name}_total", labels) or 0.0

    keys = {"checks_red": ("gateway_credit_checks", {"client": "demo", "channel": "cli", "outcome": "queried",
                                                     "colour": "red"}),
            "checks_cached": ("gateway_credit_checks", {"client": "demo", "channel": "cli", "outcome": "cached",
                                                        "colour": "yellow"}),
            "hits": ("gateway_credit_cache_hits", {"client": "demo"}),
            "soap_red": ("gateway_credit_bureau_queries", {"bureau": "soap", "result": "red"}),
            "json_garbage": ("gateway_credit_bureau_queries", {"bureau": "json", "result": "invalid_answer"}),
            "third_down": ("gateway_credit_bureau_queries", {"bureau": "third", "result": "unavailable"}),
            "third_yellow": ("gateway_credit_bureau_queries", {"bureau": "third", "result": "yellow"})}
    before = {k: value(n, **lab) for k, (n, lab) in keys.items()}
    live["json"].set_fault(Fault.GARBAGE)
    live["third"].set_fault(Fault.DOWN)
    assert check(app, person("Paul", "Pleite")).colour == "red"
    for sim in live.values():
        sim.set_fault(Fault.NONE)
    planted = msgspec.structs.replace(person(PLANTED_FIRST, PLANTED_LAST), city="Quakenbrück")
    assert not check(app, planted).cached and check(app, planted).cached
    after = {k: value(n, **lab) for k, (n, lab) in keys.items()}
    assert {k: after[k] - before[k] for k in keys} == {
        "checks_red": 1, "checks_cached": 1, "hits": 1, "soap_red": 1, "json_garbage": 1, "third_down": 1,
        "third_yellow": 1}
    text = generate_latest(Exposition()).decode()
    for secret in (PLANTED_FIRST, PLANTED_LAST, "Quakenbrück", "Pleite", "1971-04-23", "50667"):
        assert secret not in text


def test_demo_bureau_simulators_serve_runs(tmp_path: Path, db_url: str) -> None:
    from adapters.bureaus.simulators.http_sim import refused_port
    from gateway.entrypoints.demo_bureaus import start_bureau_simulators
    ports = refused_port(), refused_port()
    bureaus = {"j": {"adapter": "http_json", "options": {"url": f"http://127.0.0.1:{ports[0]}"},
                     "simulator": {"enabled": True}},
               "s": {"adapter": "soap", "options": {"wsdl": f"http://127.0.0.1:{ports[1]}/soap?wsdl"},
                     "simulator": {"enabled": True}}}
    path = write_config(tmp_path, db_url, bureaus=bureaus, clients={"demo": {
        "name": "Demo", "mapping": "demo", "default_partner": "demo-agency", "credit": {"bureaus": ["j", "s"]}}})
    init_keys(load_config(path))
    app = build_app(path, migrate=True)
    started = start_bureau_simulators(app)
    try:
        assert len(started) == 2
        assert start_bureau_simulators(app) == []  # ports taken: logged, not fatal
        started[1].set_fault(Fault.DOWN)  # the SOAP bureau is down at first use: its WSDL cannot be loaded
        first = check(app, person("Vera", "Vollstreckt"))
        assert (first.colour, first.incomplete) == ("red", True)
        started[1].set_fault(Fault.NONE)
        answer = check(app, person("Hans", "Hart"))
        assert (answer.colour, answer.incomplete) == ("red", False)
    finally:
        for sim in started:
            sim.stop()
        app.close()


def test_key_rotation_keeps_checks_readable_and_linked(app: App) -> None:
    from gateway.services import key_rotation
    answer = check(app, person("Vera", "Vollstreckt"))
    claim = msgspec.structs.replace(make_claim("R-ROT"), client_id="demo",
                                    debtor=msgspec.structs.replace(make_claim().debtor, first_name="Vera",
                                                                   last_name="Vollstreckt"))
    cid = submit.submit_claims(app, "demo", [submit.Draft(reference="R-ROT", claim=claim)]).results[0].claim_id
    assert cid is not None
    key_rotation.rotate_client(app, "demo")  # the old client key is destroyed at the end
    assert credit.get_check(app, "demo", answer.check_id).subject == person("Vera", "Vollstreckt")
    key_rotation.rotate_index(app)
    assert [s.check_id for s in credit.checks_for_claim(app, "demo", cid)] == [answer.check_id]
    assert check(app, person("Vera", "Vollstreckt")).cached  # the cache key follows the new index key
