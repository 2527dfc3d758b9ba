"""A partner's amount with an absurd exponent (``1e99999999``: a JSON number since 55463f9, or such a string
before) is an invalid amount like any other, not an error of the whole page. Before, turning it into minor
units raised decimal.Overflow (no InvalidOperation), which failed the page: the same page failed at every pull
and the partner's feed was stuck for good. One a little smaller (``1e999990``) became an integer of a million
digits, half a minute of CPU inside the apply transaction (SQLite's write lock held meanwhile), per update."""

from __future__ import annotations

from gateway.bootstrap import App
from gateway.services.partner_updates import apply_updates
from tests.integration.test_projection import P, handed, up  # noqa: F401


def test_amounts_of_absurd_magnitude_are_invalid_amounts(app: App, handed: list[int]) -> None:  # noqa: F811
    a = handed[0]
    got = apply_updates(app, P, [up(1, a, "payment", amount="1E+99999999", currency="EUR"),
                                 up(2, a, "payment", amount="1E+999990", currency="EUR"),
                                 up(3, a, "payment", amount="1E-99999999", currency="EUR"),
                                 up(4, a, "payment", amount="10.00", currency="EUR")])
    assert got.counts == {"invalid_amount": 3, "recorded": 1}
