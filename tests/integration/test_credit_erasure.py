"""Erasing a credit check leaves nothing that links its subject: not the erased row's blind indexes, nor those
of the cached rows that repeated it; ``keys destroy-client`` does the same for all the client's checks. Both
databases (the ``env`` fixture of test_credit)."""
from __future__ import annotations

from datetime import timedelta

import msgspec
from sqlalchemy import select

from adapters.bureaus.simulators.http_sim import HttpBureauSimulator
from gateway.bootstrap import App
from gateway.services import credit, erasure, submit
from gateway.services.key_rotation import destroy_client
from gateway.store import credit_checks
from gateway.store.db import read_tx, write_tx
from tests.factories import make_claim
from tests.integration.test_credit import app, check, env, live, person  # noqa: F401  (fixtures)

c = credit_checks.credit_checks.c


def _indexed(app: App, *ids: int) -> list[tuple[int, str, str | None]]:  # noqa: F811
    """The given rows that still carry a blind index (subject_key not erased, or a name index)."""
    with read_tx(app.engine) as conn:
        return [tuple(r) for r in conn.execute(select(c.id, c.subject_key, c.subject_index).where(
            c.id.in_(ids), (c.subject_key != credit_checks.ERASED_KEY) | c.subject_index.is_not(None)))]


def _claim_of(app: App, reference: str, first: str, last: str) -> int:  # noqa: F811
    claim = msgspec.structs.replace(make_claim(reference), client_id="demo",
                                    debtor=msgspec.structs.replace(make_claim().debtor, first_name=first,
                                                                   last_name=last))
    claim_id = submit.submit_claims(app, "demo", [submit.Draft(reference=reference, claim=claim)]).results[0].claim_id
    assert claim_id is not None
    return claim_id


def test_erasure_by_name_clears_the_cached_rows_indexes_too(app: App, live: dict[str, HttpBureauSimulator]) -> None:  # noqa: F811
    vera = person("Vera", "Vollstreckt")
    first, cached = check(app, vera), check(app, vera)
    assert cached.cached and cached.source_check_id == first.check_id
    assert credit.erase_checks(app, "demo", subject_name="Vera Vollstreckt") == 1
    assert _indexed(app, first.check_id, cached.check_id) == []
    # a later claim of the same debtor shows none of the erased subject's checks; a new check asks again
    assert credit.checks_for_claim(app, "demo", _claim_of(app, "R-AFTER", "Vera", "Vollstreckt")) == []
    assert not check(app, vera).cached


def test_erasing_a_cached_check_erases_its_source(app: App, live: dict[str, HttpBureauSimulator]) -> None:  # noqa: F811
    vera = person("Vera", "Vollstreckt")
    first = check(app, vera)
    cached = check(app, vera)
    assert credit.erase_checks(app, "demo", check_id=cached.check_id) == 1
    shown = {r["check_id"]: r["subject"] for r in credit.audit_log(app, "demo")}
    assert shown[cached.check_id] == shown[first.check_id] == "[erased]"
    assert _indexed(app, first.check_id, cached.check_id) == []
    assert not check(app, vera).cached


def test_retention_clears_the_indexes_of_newer_cached_rows(app: App, live: dict[str, HttpBureauSimulator]) -> None:  # noqa: F811
    vera = person("Vera", "Vollstreckt")
    first, cached = check(app, vera), check(app, vera)
    with write_tx(app.engine) as conn:
        conn.execute(credit_checks.credit_checks.update().where(c.id == first.check_id)
                     .values(created_at=app.now() - timedelta(days=400)))
    assert erasure.run_credit_retention(app).credit_checks == {"demo": 1}
    assert _indexed(app, first.check_id, cached.check_id) == []


def test_destroy_client_erases_its_checks_and_keeps_the_audit(app: App, live: dict[str, HttpBureauSimulator]) -> None:  # noqa: F811
    first = check(app, person("Erika", "Mustermann"))
    other = check(app, person("Erika", "Mustermann"), client="other")
    assert destroy_client(app, "demo")["credit checks"] == 1
    again = check(app, person("Erika", "Mustermann"))
    assert not again.cached, f"answered from the shredded check {again.source_check_id}"
    assert _indexed(app, first.check_id) == []
    rows = {r["check_id"]: r for r in credit.audit_log(app, "demo")}
    assert (rows[first.check_id]["subject"], rows[first.check_id]["colour"]) == ("[erased]", "green")
    assert check(app, person("Erika", "Mustermann"), client="other").source_check_id == other.check_id


def test_reusable_skips_rows_without_data_or_key(app: App, live: dict[str, HttpBureauSimulator]) -> None:  # noqa: F811
    first = check(app, person("Erika", "Mustermann"))
    with write_tx(app.engine) as conn:  # a row whose key is gone but whose data was left (older releases)
        conn.execute(credit_checks.credit_checks.update().where(c.id == first.check_id)
                     .values(wrapped_dek=None, key_id=None))
    assert not check(app, person("Erika", "Mustermann")).cached


def test_reusable_skips_rows_whose_client_key_is_destroyed(app: App,  # noqa: F811
                                                           live: dict[str, HttpBureauSimulator]) -> None:  # noqa: F811
    from gateway.store import keys_store
    first = check(app, person("Erika", "Mustermann"))
    kc = keys_store.client_keys.c
    with read_tx(app.engine) as conn:
        kid = conn.execute(select(c.key_id).where(c.id == first.check_id)).scalar_one()
    with write_tx(app.engine) as conn:  # the key shredded by hand, the check's row untouched
        conn.execute(keys_store.client_keys.update().where(kc.client_id == "demo", kc.key_id == kid)
                     .values(wrapped_kek=None))
    assert not check(app, person("Erika", "Mustermann")).cached
