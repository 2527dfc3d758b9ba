"""Envelope keys, rotation, erasure and retention on SQLite and PostgreSQL (docs/security.md)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import func, select, text

from gateway.bootstrap import App
from gateway.crypto import envelope
from gateway.crypto.fieldcrypt import load_field_cipher
from gateway.domain.lifecycle import Actor, State
from gateway.errors import KeyStoreError, NotFound
from gateway.services import claim_export, claim_queries, erasure, key_rotation
from gateway.store import claims as claim_store
from gateway.store import messages as message_store
from gateway.store import submissions as sub_store
from gateway.store.claim_search import ClaimFilter
from gateway.store.claims import NewClaim
from gateway.store.db import _alembic_config, read_tx, upgrade, write_tx
from gateway.store.keys_store import claim_keys, client_keys
from gateway.store.schema import claims, messages, submission_payloads
from tests.factories import make_claim

NAME, FULL = "Müller", "Jürgen Müller"  # make_claim's debtor, and the name the index is made of


def seed(app: App, refs: list[str], state: State = State.QUEUED, payload: bytes = b"",
         partner: str | None = None) -> list[int]:
    with write_tx(app.engine) as conn:
        sub = sub_store.create(conn, client_id="demo", channel="cli", filename="f.csv", sha256="ab" * 32,
                               size=1, dedupe=False)
        assert sub is not None
        if payload:
            sub_store.store_payload(conn, app.cipher, sub["id"], [payload])
        sub_store.finish(conn, sub["id"], status="completed", counts=sub_store.SubmissionCounts(
            rows=len(refs), accepted=len(refs), held=0, rejected=0, currency="EUR", total_minor=0))
        return claim_store.insert_new(conn, app.cipher, sub["id"],
                                      [NewClaim(claim=make_claim(r, partner_id=partner), state=state) for r in refs])


def debtor_of(app: App, cid: int) -> str:
    return claim_queries.operator_claim(app, cid).claim.debtor.display_name()


def found_by_name(app: App, name: str) -> list[int]:
    rows, _, _ = claim_queries.list_claims(app, "demo", ClaimFilter(text=name))
    return sorted(r["claim_id"] for r in rows)


def test_new_claims_are_envelopes_with_a_key_per_claim(app: App) -> None:
    a, b = seed(app, ["E-1", "E-2"])
    with read_tx(app.engine) as conn:
        values = dict(conn.execute(select(claims.c.id, claims.c.personal)).all())
        keys = conn.execute(select(claim_keys.c.claim_id, claim_keys.c.key_id, claim_keys.c.wrapped_dek)).all()
        index = conn.execute(select(func.count()).where(claims.c.debtor_index.is_not(None))).scalar_one()
    assert all(envelope.is_envelope(bytes(v)) for v in values.values())
    assert {k[0] for k in keys} == {a, b} and {k[1] for k in keys} == {"c1"}
    assert len({bytes(k[2]) for k in keys}) == 2 and index == 0  # one key each; the index left claims
    assert debtor_of(app, a) == debtor_of(app, b) != envelope.ERASED_NAME
    assert found_by_name(app, f"  {FULL.upper()} ") == [a, b]


def test_migration_0009_moves_old_values_into_envelopes(app: App) -> None:
    command.downgrade(_alembic_config(app.engine), "0008")
    cipher = app.cipher
    old = []  # claims written as the code before 0009 wrote them: master key, one global name index
    for ref in ("L-1", "L-2"):
        cols = list(claim_store.prepare_claim(cipher, make_claim(ref)))
        plain = envelope.open_sealed(cols[15], cols[11], f"claim:demo\x1f{ref}".encode())
        cols = cols[:15]
        cols[10], cols[11] = cipher.blind_index("Jürgen Müller"), cipher.encrypt(plain, f"claim:demo\x1f{ref}".encode())
        old.append((tuple(cols), State.QUEUED, None, None))
    with write_tx(app.engine) as conn:
        sub = sub_store.create(conn, client_id="demo", channel="cli", filename="f.csv", sha256="cd" * 32, size=1,
                               dedupe=False)
        assert sub is not None
        ids = claim_store.insert_prepared(conn, sub["id"], old)
    upgrade(app.engine)
    with read_tx(app.engine) as conn:
        rows = conn.execute(select(claims.c.personal, claims.c.debtor_index)).all()
    assert all(envelope.is_envelope(bytes(p)) and i is None for p, i in rows)
    assert [claim_queries.operator_claim(app, i).claim for i in ids] == [make_claim("L-1"), make_claim("L-2")]
    assert found_by_name(app, "jürgen müller") == ids
    with write_tx(app.engine) as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE claims SET open_minor = 1"))  # the triggers are back


def test_erasure_leaves_no_readable_personal_data(app: App) -> None:
    a, b, keep = seed(app, ["X-1", "X-2", "X-3"], payload=b"raw file")
    with write_tx(app.engine) as conn:
        message_store.add(conn, app.cipher, claim_id=a, client_id="demo", direction="to_partner", text="Ratenzahlung?")
        wrapped_a = conn.execute(select(claim_keys.c.wrapped_dek).where(claim_keys.c.claim_id == a)).scalar_one()
    assert erasure.find(app, client_id="demo", reference="X-2") == [b]
    with pytest.raises(NotFound):
        erasure.find(app, client_id="other", debtor_name=NAME)
    ids = erasure.find(app, client_id="demo", debtor_name="jürgen   müller")
    assert ids == [a, b, keep]
    rep = erasure.erase(app, [a, b], "Art. 17 request 2025-07", by="tester")
    assert rep.erased == [a, b] and erasure.erase(app, [a], "again", by="tester").already == [a]
    for cid in (a, b):
        view = claim_queries.operator_claim(app, cid)
        assert view.claim.debtor.display_name() == envelope.ERASED_NAME and view.claim.memo is None
        assert view.claim.principal_amount == make_claim().principal_amount  # amounts kept for accounting
        assert claim_queries.get_claim(app, "demo", cid).claim.debtor.last_name == envelope.ERASED_NAME
        last = claim_queries.history(app, "demo", cid)[-1]
        assert (last["kind"], last["actor"], last["data"]["by"]) == ("erased", "operator", "tester")
    assert debtor_of(app, keep) == "Jürgen Müller"
    assert found_by_name(app, FULL) == [keep]
    exported = [r for page in claim_export.rows(app, claim_export.ExportFilter(client_id="demo"), True)
                for r in [page]]
    assert sum(envelope.ERASED_NAME in row for row in exported) == 2
    with read_tx(app.engine) as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar_one() == 0
        value = bytes(conn.execute(select(claims.c.personal).where(claims.c.id == a)).scalar_one())
    # Even with every key of the gateway, the erased value cannot be opened: its data key is gone.
    kek = app.cipher.client_kek("demo", "c1", key_row(app, "c1"))
    dek = envelope.unwrap(kek, bytes(wrapped_a), envelope.dek_aad(a, "demo"))  # the key as it was
    assert NAME.encode() in envelope.open_sealed(dek, value, b"claim:demo\x1fX-1")  # (it was this value)
    with read_tx(app.engine) as conn:
        assert conn.execute(select(func.count()).where(claim_keys.c.claim_id == a)).scalar_one() == 0


def key_row(app: App, key_id: str) -> bytes:
    with read_tx(app.engine) as conn:
        return bytes(conn.execute(select(client_keys.c.wrapped_kek).where(client_keys.c.key_id == key_id))
                     .scalar_one())


def test_retention_erases_closed_claims_and_raw_files(app: App) -> None:
    app.config.clients["demo"].retention_days_after_close = 30
    closed, open_ = seed(app, ["T-1", "T-2"], payload=b"raw file")
    with write_tx(app.engine) as conn:
        claim_store.transition(conn, [closed], State.CANCELLED_BY_CLIENT, Actor.OPERATOR)
    assert erasure.run_retention(app).claims == {}  # not yet 30 days
    rep = erasure.run_retention(app, now=app.now() + timedelta(days=31))
    assert rep.claims == {"demo": 1} and rep.payloads == {"demo": 1}
    assert debtor_of(app, closed) == envelope.ERASED_NAME and debtor_of(app, open_) == "Jürgen Müller"
    assert claim_queries.history(app, "demo", closed)[-1]["actor"] == "system"
    with read_tx(app.engine) as conn:
        assert conn.execute(select(func.count()).select_from(submission_payloads)).scalar_one() == 0


def test_client_key_rotation_then_destruction(app: App) -> None:
    ids = seed(app, ["K-1", "K-2", "K-3"])
    rep = key_rotation.rotate_client(app, "demo")
    assert (rep.key_id, rep.rewrapped) == ("c2", 3)
    with read_tx(app.engine) as conn:
        kept = conn.execute(select(client_keys.c.key_id, client_keys.c.wrapped_kek)).all()
    assert {k: w is not None for k, w in kept} == {"c1": False, "c2": True}
    assert [debtor_of(app, i) for i in ids] == ["Jürgen Müller"] * 3
    counts = key_rotation.destroy_client(app, "demo")
    assert counts["client keys"] == 1 and counts["claim keys"] == 3
    assert [debtor_of(app, i) for i in ids] == [envelope.ERASED_NAME] * 3
    [later] = seed(app, ["K-4"])  # a later claim of the client gets a new key
    assert debtor_of(app, later) == "Jürgen Müller"


def test_master_rotation_rewraps_and_retires(app: App) -> None:
    [cid] = seed(app, ["M-1"], payload=b"raw file")
    with write_tx(app.engine) as conn:
        message_store.add(conn, app.cipher, claim_id=cid, client_id="demo", direction="to_partner", text="Hallo")
    before = load_field_cipher(app.config.keys_dir / "data-keys.json")  # a process that loaded the old file
    rep = key_rotation.rotate_master(app)
    assert rep.key_id == "k2" and rep.rewrapped == 1
    assert rep.reencrypted == {"documents": 0, "messages": 1, "payloads": 1}
    key_rotation.retire(app, "k1")
    doc = json.loads((app.config.keys_dir / "data-keys.json").read_text())
    assert (doc["active"], sorted(doc["keys"])) == ("k2", ["k2"])
    with pytest.raises(KeyStoreError, match="active"):
        key_rotation.retire(app, "k2")
    with read_tx(app.engine) as conn:  # the old process meets k2 and re-reads the file by itself
        assert claim_store.decode(claim_store.get_row(conn, cid), before).debtor.last_name == "Müller"
        assert message_store.for_claim(conn, before, cid)[0]["text"] == "Hallo"
    assert before.active_key_id == "k2"


def test_index_key_rotation_rebuilds_name_search_and_fingerprints(app: App) -> None:
    a, b = seed(app, ["I-1", "I-2"])
    erasure.erase(app, [b], "debtor asked (Art. 17)")
    assert found_by_name(app, FULL) == [a]
    with read_tx(app.engine) as conn:
        before = dict(conn.execute(select(claim_keys.c.claim_id, claim_keys.c.name_index)).all())
    old_index_key = app.cipher.index_key
    rep = key_rotation.rotate_index(app)
    assert rep.rewrapped == 1  # the erased claim has no key, so nothing to index
    assert app.cipher.index_key != old_index_key
    with read_tx(app.engine) as conn:
        after = dict(conn.execute(select(claim_keys.c.claim_id, claim_keys.c.name_index)).all())
    assert after[a] != before[a] and after[a] is not None
    assert found_by_name(app, FULL) == [a]  # found under the new key
    fresh = load_field_cipher(app.config.keys_dir / "data-keys.json")  # what another process reads now
    assert fresh.index_key == app.cipher.index_key
    assert debtor_of(app, a) == FULL
