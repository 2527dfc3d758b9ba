"""``gateway keys rotate|retire|destroy-client``: change keys while ``serve`` runs.

- master: a new key becomes active in the key file; every client key is re-wrapped under it (a few rows),
  then documents, messages and raw payloads still under an older key are re-encrypted in batches. Older
  keys stay in the file (running processes and backups still name them) until ``keys retire``.
- client: a new client key; the client's claim keys are re-wrapped under it in batches, then the old
  client keys are destroyed.
- index: a new blind-index key; every claim's name index and fingerprint are computed again under it.
- destroy-client: every key of the client is destroyed and its documents, messages and raw payloads are
  deleted: all of the client's personal data becomes unreadable at once.

Running processes follow the key file by themselves (``FieldCipher``: an unknown key id makes them re-read
it, and they look at its modification time once a second).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, delete, func, select, tuple_, update

from gateway.bootstrap import DATA_KEY_FILE, App
from gateway.crypto import envelope
from gateway.crypto.fieldcrypt import key_file_content, key_id_of
from gateway.errors import KeyStoreError
from gateway.services import credit
from gateway.services.keys import _write_secret
from gateway.store import claims as claim_store
from gateway.store import credit_checks
from gateway.store import documents as doc_store
from gateway.store import fingerprints
from gateway.store import messages as message_store
from gateway.store.db import read_tx, write_tx
from gateway.store.keys_store import add_kek, claim_keys, client_keys
from gateway.store.schema import claim_fingerprints, claims, documents, messages, submission_payloads, submissions
from gateway.store.sql import utcnow

BATCH = 500
Progress = Callable[[str, int], None]  # (what, rows done so far)


@dataclass
class RotationReport:
    key_id: str
    rewrapped: int = 0
    reencrypted: dict[str, int] = field(default_factory=dict)


def _key_path(app: App) -> Path:
    env = app.config.keys.data_keys_env
    if env and os.environ.get(env):
        raise KeyStoreError(f"the data keys come from ${env}: rotate by changing that variable, not the file")
    return app.config.keys_dir / DATA_KEY_FILE


def rotate_master(app: App, progress: Progress | None = None) -> RotationReport:
    """A new active master key; client keys re-wrapped, stored values re-encrypted under it."""
    path, cipher = _key_path(app), app.cipher
    cipher.reload()
    keys = cipher.keys()
    kid = f"k{max((int(k[1:]) for k in keys if k[1:].isdigit()), default=0) + 1}"
    keys[kid] = secrets.token_bytes(32)
    _write_secret(path, json.dumps(key_file_content(keys, kid, cipher.index_key), indent=2).encode())
    cipher.reload()
    return _move_to_active(app, RotationReport(kid), progress)


def _move_to_active(app: App, report: RotationReport, progress: Progress | None) -> RotationReport:
    """Re-wrap client keys and re-encrypt stored values that are not under the active master key."""
    cipher, kid = app.cipher, app.cipher.active_key_id
    with write_tx(app.engine) as conn:
        for r in conn.execute(select(client_keys).where(client_keys.c.wrapped_kek.is_not(None))).mappings().all():
            wrapped = bytes(r["wrapped_kek"])
            if key_id_of(wrapped) == kid:
                continue
            plain = cipher.decrypt(wrapped, envelope.kek_aad(r["client_id"], r["key_id"]))
            conn.execute(update(client_keys).where(client_keys.c.client_id == r["client_id"],
                                                   client_keys.c.key_id == r["key_id"])
                         .values(wrapped_kek=cipher.wrap_kek(r["client_id"], r["key_id"], plain)))
            report.rewrapped += 1
    # The AAD of each kind of value: the same binding its store module uses.
    aad_doc: Callable[[Any], bytes] = lambda r: doc_store._aad(r["claim_id"], r["sha256"])  # noqa: E731
    aad_msg: Callable[[Any], bytes] = lambda r: message_store._aad(r["claim_id"], r["direction"])  # noqa: E731
    aad_pay: Callable[[Any], bytes] = lambda r: f"payload:{r['submission_id']}:{r['seq']}".encode()  # noqa: E731
    for name, table, col, keycols, aad in (
            ("documents", documents, "data", ("id",), aad_doc),
            ("messages", messages, "text", ("id",), aad_msg),
            ("payloads", submission_payloads, "data", ("submission_id", "seq"), aad_pay)):
        report.reencrypted[name] = _reencrypt(app, name, table, col, keycols, aad, kid, progress)
    return report


def _reencrypt(app: App, name: str, table: Table, col: str, keycols: tuple[str, ...], aad: Callable[[Any], bytes],
               active: str, progress: Progress | None) -> int:
    """Re-encrypt, batch by batch in key order, every value of ``table.col`` not under ``active``."""
    done, last = 0, None
    order = [table.c[k] for k in keycols]
    while True:
        with write_tx(app.engine) as conn:
            q = select(table).order_by(*order).limit(BATCH)
            if last is not None:
                q = q.where(tuple_(*order) > tuple_(*last))
            rows = conn.execute(q).mappings().all()
            for r in rows:
                blob = bytes(r[col])
                if key_id_of(blob) in (None, active):
                    continue
                conn.execute(update(table).where(*(table.c[k] == r[k] for k in keycols))
                             .values({col: app.cipher.encrypt(app.cipher.decrypt(blob, aad(r)), aad(r))}))
                done += 1
        if not rows:
            return done
        last = tuple(rows[-1][k] for k in keycols)
        if progress:
            progress(name, done)


def retire(app: App, key_id: str, progress: Progress | None = None) -> RotationReport:
    """Remove an old master key from the key file, after moving what a process wrote under it meanwhile."""
    path, cipher = _key_path(app), app.cipher
    cipher.reload()
    keys = cipher.keys()
    if key_id not in keys:
        raise KeyStoreError(f"no master key '{key_id}'")
    if key_id == cipher.active_key_id:
        raise KeyStoreError(f"'{key_id}' is the active key: rotate first")
    report = _move_to_active(app, RotationReport(cipher.active_key_id), progress)
    prefix = b"G1" + bytes([len(key_id.encode())]) + key_id.encode()
    with read_tx(app.engine) as conn:
        still = {name: n for name, n in (
            ("client keys", _count(conn, client_keys.c.wrapped_kek, prefix)),
            ("documents", _count(conn, documents.c.data, prefix)),
            ("messages", _count(conn, messages.c.text, prefix)),
            ("payloads", _count(conn, submission_payloads.c.data, prefix)),
            ("claims", _count(conn, claims.c.personal, prefix))) if n}
    if still:
        raise KeyStoreError(f"key '{key_id}' still encrypts " + ", ".join(f"{n} {k}" for k, n in still.items())
                            + ": a process still writes under it (is every node following the key file?)")
    del keys[key_id]
    _write_secret(path, json.dumps(key_file_content(keys, cipher.active_key_id, cipher.index_key), indent=2)
                  .encode())
    cipher.reload()
    return report


def _count(conn: Connection, col: Any, prefix: bytes) -> int:
    return int(conn.execute(select(func.count()).where(func.substr(col, 1, len(prefix)) == prefix)).scalar_one())


def rotate_client(app: App, client_id: str, progress: Progress | None = None) -> RotationReport:
    """A new key for one client; its claim keys re-wrapped under it, then its old keys destroyed."""
    with write_tx(app.engine) as conn:
        kid = add_kek(conn, app.cipher, client_id)
    report = RotationReport(kid)
    while True:
        with write_tx(app.engine) as conn:
            n = _rewrap_batch(app, conn, client_id, kid)
        report.rewrapped += n
        if progress:
            progress("claim keys", report.rewrapped)
        if n < BATCH:
            break
    with write_tx(app.engine) as conn:
        # Locked first: an intake that picked an old key before the new one existed commits before this goes on.
        conn.execute(select(client_keys.c.key_id).where(client_keys.c.client_id == client_id,
                                                        client_keys.c.key_id != kid).with_for_update()).all()
        while (n := _rewrap_batch(app, conn, client_id, kid)):
            report.rewrapped += n
        credit.rewrap_checks(app, conn, client_id, kid)  # credit checks are sealed under the client key too
        conn.execute(update(client_keys).where(client_keys.c.client_id == client_id, client_keys.c.key_id != kid,
                                               client_keys.c.wrapped_kek.is_not(None))
                     .values(wrapped_kek=None, destroyed_at=utcnow()))
    return report


def _rewrap_batch(app: App, conn: Connection, client_id: str, kid: str) -> int:
    rows = conn.execute(select(claim_keys.c.claim_id, claim_keys.c.key_id, claim_keys.c.wrapped_dek,
                               client_keys.c.wrapped_kek)
                        .join(client_keys, (client_keys.c.client_id == claim_keys.c.client_id)
                              & (client_keys.c.key_id == claim_keys.c.key_id))
                        .where(claim_keys.c.client_id == client_id, claim_keys.c.key_id != kid,
                               client_keys.c.wrapped_kek.is_not(None))
                        .limit(BATCH)).all()
    if not rows:
        return 0
    new = conn.execute(select(client_keys.c.wrapped_kek).where(client_keys.c.client_id == client_id,
                                                              client_keys.c.key_id == kid)).scalar_one()
    new_kek = app.cipher.client_kek(client_id, kid, bytes(new))
    for cid, old_kid, wrapped, old_wrapped in rows:
        aad = envelope.dek_aad(cid, client_id)
        dek = envelope.unwrap(app.cipher.client_kek(client_id, old_kid, bytes(old_wrapped)), bytes(wrapped), aad)
        conn.execute(update(claim_keys).where(claim_keys.c.claim_id == cid)
                     .values(key_id=kid, wrapped_dek=envelope.wrap(new_kek, dek, aad)))
    return len(rows)


def destroy_client(app: App, client_id: str) -> dict[str, int]:
    """Destroy every key of a client and delete its documents, messages and raw payloads; its credit checks
    keep their audit rows without data, key or blind indexes."""
    with write_tx(app.engine) as conn:
        own = select(claims.c.id).where(claims.c.client_id == client_id)
        counts = {
            "client keys": conn.execute(update(client_keys).where(client_keys.c.client_id == client_id,
                                                                  client_keys.c.wrapped_kek.is_not(None))
                                        .values(wrapped_kek=None, destroyed_at=utcnow())).rowcount,
            # the sealed data no longer opens once the keys are gone; its blind indexes would still link the
            # subject to later claims and answer a new check as "cached" from nothing (audit rows stay)
            "credit checks": credit_checks.erase_all(conn, client_id),
            "claim keys": conn.execute(delete(claim_keys).where(claim_keys.c.client_id == client_id)).rowcount,
            "documents": conn.execute(delete(documents).where(documents.c.client_id == client_id)).rowcount,
            "messages": conn.execute(delete(messages).where(messages.c.client_id == client_id)).rowcount,
            "payload chunks": conn.execute(delete(submission_payloads).where(
                submission_payloads.c.submission_id.in_(select(submissions.c.id)
                                                        .where(submissions.c.client_id == client_id)))).rowcount,
        }
        conn.execute(delete(claim_fingerprints).where(claim_fingerprints.c.claim_id.in_(own)))
    return counts


def rotate_index(app: App, progress: Progress | None = None) -> RotationReport:
    """A new blind-index key: every claim's name index and fingerprint are computed again under it.

    Until the rebuild has gone through all claims, a name search may miss claims not yet rebuilt (the
    running processes already search with the new key); nothing else is affected. Erased claims have no
    index to rebuild.
    """
    path, cipher = _key_path(app), app.cipher
    cipher.reload()
    _write_secret(path, json.dumps(key_file_content(cipher.keys(), cipher.active_key_id, secrets.token_bytes(32)),
                                   indent=2).encode())
    cipher.reload()
    report, last = RotationReport(cipher.active_key_id), 0
    while True:
        with write_tx(app.engine) as conn:
            rows = list(conn.execute(claim_store.keyed_rows_after(last, BATCH)).mappings())
            for row in rows:
                claim = claim_store.decode(row, cipher)
                name = claim.debtor.display_name()
                conn.execute(update(claim_keys).where(claim_keys.c.claim_id == row["id"]).values(
                    name_index=cipher.blind_index(name, row["client_id"]) if name else None))
                conn.execute(update(claim_fingerprints).where(claim_fingerprints.c.claim_id == row["id"])
                             .values(fingerprint=fingerprints.fingerprint(cipher, claim)))
        if not rows:
            with write_tx(app.engine) as conn:
                credit.reindex_checks(app, conn)  # their cache key and claim link are blind indexes too
            return report
        last = rows[-1]["id"]
        report.rewrapped += len(rows)
        if progress is not None:
            progress("claims", report.rewrapped)
