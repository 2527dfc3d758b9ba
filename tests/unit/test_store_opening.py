"""The generated intake projection row and the batched key wrapping equal their general forms."""

from __future__ import annotations

import itertools
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.crypto import envelope
from gateway.domain.lifecycle import State
from gateway.store import claims


def _cols(client: str, ref: str, partner: str | None, cur: str, principal: int, fees: int, paid: int) -> tuple:
    # PreparedClaim layout (store/claims.prepare_claim): [0] client, [1] reference, [2] partner, [4] currency,
    # [5] principal, [13] fees, [14] paid before
    return (client, ref, partner, "service", cur, principal, principal, None, None, None, None, b"", "{}",
            fees, paid, b"k" * 32, None)


def test_generated_opening_row_equals_the_projection_fold() -> None:
    amounts = [0, 1, 99, 12_345]
    for n, (principal, fees, paid, partner, state) in enumerate(itertools.product(
            amounts, amounts, [0, 50, 20_000], [None, "agency"], [State.QUEUED, State.HELD])):
        cols = _cols(f"client-{n % 3}", f"REF-{n}", partner, ["EUR", "JPY"][n % 2], principal, fees, paid)
        t = "2026-11-30 10:00:00.000000"
        expected = claims._opening(1000 + n, 5000 + n, 7, cols, state, t)
        assert claims._opening_values(1000 + n, 5000 + n, 7, cols, state.value, t) == expected


def test_wrap_all_opens_like_wrap() -> None:
    kek = AESGCM(os.urandom(32))
    keys = [os.urandom(32) for _ in range(50)]
    aads = [envelope.dek_aad(i, "demo") for i in range(50)]
    wrapped = envelope.wrap_all(kek, keys, aads)
    assert len({w[:12] for w in wrapped}) == 50  # a nonce of its own for every key
    assert [envelope.unwrap(kek, w, a) for w, a in zip(wrapped, aads)] == keys
    assert envelope.wrap_all(kek, [], []) == []
