"""The limitation rule (BGB 195, 199, 203, 204, 209, 212): table-driven over year ends, leap days, part payments,
acknowledgements and suspensions; the findings it gives and what their messages may say."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.config import load_config
from gateway.domain.findings import Severity
from gateway.domain.limitation import (LIMITATION_NEAR, STATUTORY, TIME_BARRED, LimitationPolicy, Period, add_months,
                                       limitation, limitation_date, limitation_findings)
from gateway.domain.model import Payment
from gateway.errors import ConfigError
from gateway.services.render import BatchMeta, render_batch, validate_batch
from tests.factories import make_claim

D = date


def claim(**kw: Any) -> Any:
    base: dict[str, Any] = {"invoice_date": None, "due_date": None, "fees": []}
    return make_claim(**{**base, **kw})


@pytest.mark.parametrize(("day", "months", "expected"), [
    (D(2024, 5, 10), 36, D(2027, 5, 10)),
    (D(2024, 2, 29), 36, D(2027, 2, 28)),   # BGB 188 III: no 29 February in 2027
    (D(2024, 2, 29), 48, D(2028, 2, 29)),   # four years on: a leap year again
    (D(2023, 2, 28), 12, D(2024, 2, 28)),   # the 28th stays the 28th, even into a leap year
    (D(2024, 1, 31), 1, D(2024, 2, 29)),
    (D(2023, 12, 31), 18, D(2025, 6, 30)),
    (D(2023, 11, 30), 2, D(2024, 1, 30)),
])
def test_add_months_follows_bgb_188(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


# (what, claim fields, policy, expected end)
CASES: list[tuple[str, dict[str, Any], LimitationPolicy, date | None]] = [
    ("due on 1 January: end of that year + 3", {"due_date": D(2022, 1, 1)}, STATUTORY, D(2025, 12, 31)),
    ("due on 31 December: the same year's end", {"due_date": D(2022, 12, 31)}, STATUTORY, D(2025, 12, 31)),
    ("due a day later: a year more", {"due_date": D(2023, 1, 1)}, STATUTORY, D(2026, 12, 31)),
    ("due on a leap day", {"due_date": D(2024, 2, 29)}, STATUTORY, D(2027, 12, 31)),
    ("no due date: the invoice date", {"invoice_date": D(2021, 6, 1)}, STATUTORY, D(2024, 12, 31)),
    ("the due date wins over the invoice date", {"invoice_date": D(2021, 12, 20), "due_date": D(2022, 1, 3)},
     STATUTORY, D(2025, 12, 31)),
    ("acknowledged: the full period from the next day, not from a year end",
     {"due_date": D(2021, 3, 1), "acknowledgement_date": D(2023, 5, 10)}, STATUTORY, D(2026, 5, 10)),
    ("acknowledged on a leap day", {"due_date": D(2022, 3, 1), "acknowledgement_date": D(2024, 2, 29)},
     STATUTORY, D(2027, 2, 28)),
    ("acknowledged on 31 December", {"due_date": D(2021, 3, 1), "acknowledgement_date": D(2023, 12, 31)},
     STATUTORY, D(2026, 12, 31)),
    ("a part payment restarts like an acknowledgement",
     {"due_date": D(2021, 3, 1), "payments_received": [Payment(amount=Decimal("10"), date=D(2022, 8, 15))]},
     STATUTORY, D(2025, 8, 15)),
    ("the last of several part payments counts",
     {"due_date": D(2021, 3, 1), "payments_received": [Payment(amount=Decimal("10"), date=D(2023, 9, 1)),
                                                       Payment(amount=Decimal("10"), date=D(2022, 8, 15))]},
     STATUTORY, D(2026, 9, 1)),
    ("last payment date without amounts", {"due_date": D(2021, 3, 1), "last_payment_date": D(2022, 4, 30)},
     STATUTORY, D(2025, 4, 30)),
    ("a payment in the year it arose changes nothing",
     {"due_date": D(2022, 3, 1), "payments_received": [Payment(amount=Decimal("10"), date=D(2022, 11, 2))]},
     STATUTORY, D(2025, 12, 31)),
    ("an acknowledgement after the end restarts nothing",
     {"due_date": D(2019, 3, 1), "acknowledgement_date": D(2023, 2, 1)}, STATUTORY, D(2022, 12, 31)),
    ("a court dunning order suspends until 6 months after the proceedings",
     {"due_date": D(2021, 3, 1), "dunning_order_date": D(2024, 1, 1), "dunning_order_end_date": D(2024, 3, 1)},
     STATUTORY, D(2024, 12, 31) + (D(2024, 9, 1) - D(2024, 1, 1)) + (D(2024, 1, 2) - D(2024, 1, 1))),
    ("a dunning order still running leaves the end open",
     {"due_date": D(2021, 3, 1), "dunning_order_date": D(2024, 6, 1)}, STATUTORY, None),
    ("a dunning order applied for after the end changes nothing",
     {"due_date": D(2019, 3, 1), "dunning_order_date": D(2023, 6, 1)}, STATUTORY, D(2022, 12, 31)),
    ("a suspension over before the period began changes nothing",
     {"due_date": D(2021, 3, 1), "dunning_order_date": D(2021, 3, 10), "dunning_order_end_date": D(2021, 5, 1)},
     STATUTORY, D(2024, 12, 31)),
    ("a suspension reaching into the period counts from its beginning (six months on: 1 January)",
     {"due_date": D(2021, 3, 1), "dunning_order_date": D(2021, 6, 1), "dunning_order_end_date": D(2021, 7, 1)},
     STATUTORY, D(2025, 1, 1)),
    ("negotiations: their days, and at least 3 months after their end",
     {"due_date": D(2021, 3, 1), "negotiation_start_date": D(2024, 12, 1), "negotiation_end_date": D(2024, 12, 20)},
     STATUTORY, D(2025, 3, 20)),
    ("long negotiations: the days count more than the floor",
     {"due_date": D(2021, 3, 1), "negotiation_start_date": D(2023, 1, 1), "negotiation_end_date": D(2023, 12, 31)},
     STATUTORY, D(2025, 12, 31)),
    ("an acknowledgement during a suspension: the new period runs after it",
     {"due_date": D(2021, 3, 1), "dunning_order_date": D(2023, 1, 10), "dunning_order_end_date": D(2023, 1, 31),
      "acknowledgement_date": D(2023, 3, 1)},
     STATUTORY, D(2026, 3, 1) + (D(2023, 7, 31) - D(2023, 3, 1))),
    ("an agreed period of 1 year from the due date", {"due_date": D(2025, 3, 15)},
     LimitationPolicy(years=1, start="arose"), D(2026, 3, 15)),
    ("18 months from the year end", {"due_date": D(2024, 5, 5)}, LimitationPolicy(years=1, months=6),
     D(2026, 6, 30)),
    ("a label's own period (a judgment: 30 years from the day)", {"due_date": D(2001, 4, 2), "labels": ["titled"]},
     LimitationPolicy(by_label={"titled": Period(years=30, start="arose")}), D(2031, 4, 2)),
    ("other labels keep the client's period", {"due_date": D(2021, 4, 2), "labels": ["gym"]},
     LimitationPolicy(by_label={"titled": Period(years=30)}), D(2024, 12, 31)),
]


@pytest.mark.parametrize(("fields", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_limitation_end(fields: dict[str, Any], policy: LimitationPolicy, expected: date | None) -> None:
    lim = limitation(claim(**fields), policy)
    assert lim is not None
    assert lim.ends_on == expected, lim.explain()


def test_no_date_no_limitation() -> None:
    assert limitation(claim()) is None
    assert limitation_findings(claim(), D(2026, 1, 1)) == []


@pytest.mark.parametrize(("today", "code", "severity"), [
    (D(2026, 1, 1), TIME_BARRED, Severity.HOLD),       # the day after the end
    (D(2025, 12, 31), LIMITATION_NEAR, Severity.WARNING),  # the last day: still enforceable
    (D(2025, 10, 1), LIMITATION_NEAR, Severity.WARNING),   # three months on is 1 January: in the window
    (D(2025, 9, 30), None, None),                      # three months on is 30 December: not yet
])
def test_findings_around_the_end(today: date, code: str | None, severity: Severity | None) -> None:
    found = limitation_findings(claim(due_date=D(2022, 3, 15)), today)
    assert [(x.code, x.severity) for x in found] == ([(code, severity)] if code else [])
    if found:
        assert found[0].field == "due_date"


def test_the_message_shows_the_inputs_but_no_name_or_amount() -> None:
    c = claim(due_date=D(2020, 3, 15), acknowledgement_date=D(2021, 5, 10), dunning_order_date=D(2023, 1, 2),
              dunning_order_end_date=D(2023, 2, 1))
    found = limitation_findings(c, D(2026, 11, 30))
    assert [x.code for x in found] == [TIME_BARRED]
    text = found[0].message
    for part in ("2020-03-15", "3 years", "acknowledgement date 2021-05-10", "court dunning order", "2023-01-02",
                 "2023-08-01", "suspended 212 days", "ended on 2024-12-08"):
        assert part in text, text
    assert c.debtor.last_name not in text and "1234" not in text and found[0].client_message is None


def test_warning_window_per_client_and_off() -> None:
    c = claim(due_date=D(2022, 3, 15))
    assert [x.code for x in limitation_findings(c, D(2025, 6, 1), LimitationPolicy(warn_months=7))] == [
        LIMITATION_NEAR]
    assert limitation_findings(c, D(2025, 12, 1), LimitationPolicy(warn_months=0)) == []
    assert limitation_findings(c, D(2027, 1, 1), LimitationPolicy(enabled=False)) == []
    assert limitation_date(c, LimitationPolicy(enabled=False)) is None
    assert limitation_date(c) == D(2025, 12, 31)


@pytest.mark.parametrize(("fields", "code", "field"), [
    ({"acknowledgement_date": D(2027, 1, 1)}, "date_in_future", "acknowledgement_date"),
    ({"dunning_order_end_date": D(2024, 1, 1)}, "missing_field", "dunning_order_date"),
    ({"negotiation_start_date": D(2024, 3, 1), "negotiation_end_date": D(2024, 2, 1)}, "date_order",
     "negotiation_end_date"),
])
def test_bad_inputs_are_errors(fields: dict[str, Any], code: str, field: str) -> None:
    found = limitation_findings(claim(due_date=D(2019, 1, 1), **fields), D(2026, 11, 30))
    assert [(x.code, x.field, x.severity) for x in found] == [(code, field, Severity.ERROR)]


@pytest.mark.parametrize("raw", [{"years": 0}, {"years": -1}, {"start": "tomorrow"}, {"warn": 3},
                                 {"by_label": {"x": {"years": 0, "months": 0}}}])
def test_policy_is_checked_when_loaded(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, LimitationPolicy)


def test_new_fields_stay_out_of_the_json_when_absent() -> None:
    assert b"acknowledgement" not in msgspec.json.encode(make_claim())


@pytest.mark.parametrize("today", [D(2025, 9, 30), D(2025, 10, 1), D(2025, 12, 31), D(2026, 1, 1), D(2028, 2, 29)])
def test_the_quick_path_agrees_with_the_full_computation(today: date) -> None:
    for due in (D(2020, 1, 1) + timedelta(days=n) for n in range(0, 3 * 366, 5)):
        c = claim(due_date=due)
        end = limitation(c).ends_on  # type: ignore[union-attr]
        assert end is not None
        expected = (TIME_BARRED if end < today else LIMITATION_NEAR if end <= add_months(today, 3) else None)
        assert [x.code for x in limitation_findings(c, today)] == ([expected] if expected else []), due


def test_the_partner_batch_carries_the_date_and_stays_valid() -> None:
    meta = BatchMeta(batch_id="b-1", created_at=datetime(2026, 11, 30, tzinfo=timezone.utc), sender="gw",
                     client_id="demo", partner_id="p", claim_count=2, total_amount=Decimal("2479.12"))
    out = io.BytesIO()
    render_batch(out, meta, [(1, make_claim("A")), (2, make_claim("B", due_date=None, invoice_date=None))],
                 limitation=limitation_date)
    xml = out.getvalue()
    assert validate_batch(xml) == []
    assert xml.count(b"<limitationDate>") == 1 and b"<defaultDate" not in xml
    assert b"</dueDate><limitationDate>2028-12-31</limitationDate><disputed>" in xml
    plain = io.BytesIO()
    render_batch(plain, meta, [(1, make_claim("A")), (2, make_claim("B", due_date=None, invoice_date=None))])
    assert b"limitationDate" not in plain.getvalue()  # without a rule: the batch as before


def test_a_bad_period_in_the_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("clients:\n  acme:\n    limitation: {years: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "clients[...].limitation" in str(exc.value) and "longer than 0" in str(exc.value)
    path.write_text("clients:\n  acme:\n    limitation: {years: 1, start: arose, warn_months: 1,"
                    " by_label: {titled: {years: 30}}}\n", encoding="utf-8")
    policy = load_config(path).client("acme").limitation
    assert policy.period_for(["titled"]) == Period(years=30) and policy.period_for([]) == Period(years=1, start="arose")


def test_limitation_date_quick_path_equals_the_full_rule() -> None:
    """limitation_date answers a claim without restarts or suspensions itself; it must say what limitation says."""
    import random

    rnd = random.Random(15)
    policies = [STATUTORY, LimitationPolicy(years=2, months=6), LimitationPolicy(years=0, months=18, start="arose"),
                LimitationPolicy(by_label={"rent": Period(years=4, start="arose"), "gym": Period(years=1)})]
    seen_quick = seen_full = 0
    for i in range(3000):
        due = D(2019, 1, 1) + timedelta(days=rnd.randrange(0, 2600))
        fields: dict[str, Any] = {"due_date": due if rnd.random() < 0.9 else None,
                                  "invoice_date": due - timedelta(days=rnd.randrange(0, 60)) if rnd.random() < 0.7
                                  else None,
                                  "labels": rnd.sample(["rent", "gym", "other"], rnd.randrange(0, 3))}
        if rnd.random() < 0.3:
            extra = rnd.choice(["acknowledgement_date", "last_payment_date", "dunning_order_date",
                                "negotiation_start_date", "payments_received"])
            day = due + timedelta(days=rnd.randrange(1, 900))
            fields[extra] = [Payment(amount=Decimal("1.00"), date=day)] if extra == "payments_received" else day
        c = claim(**fields)
        for policy in policies:
            full = limitation(c, policy)
            assert limitation_date(c, policy) == (full.ends_on if full is not None else None), (i, fields, policy)
            quick = not (c.payments_received or c.acknowledgement_date or c.last_payment_date
                         or c.dunning_order_date or c.negotiation_start_date)
            seen_quick += quick
            seen_full += not quick
    assert seen_quick > 5000 and seen_full > 2000  # both paths were taken
