"""Messages about a claim, client to partner and back; text encrypted at rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from gateway.crypto.fieldcrypt import FieldCipher
from gateway.store.schema import messages
from gateway.store.sql import utcnow


def _aad(claim_id: int, direction: str) -> bytes:
    return f"message:{claim_id}:{direction}".encode()


def add(conn: Connection, cipher: FieldCipher, *, claim_id: int, client_id: str, direction: str, text: str,
        partner_message_id: str | None = None, now: datetime | None = None) -> int | None:
    """Store a message; None if the partner's message id was stored before (inbound dedupe)."""
    values = dict(claim_id=claim_id, client_id=client_id, direction=direction,
                  text=cipher.encrypt(text.encode(), _aad(claim_id, direction)),
                  partner_message_id=partner_message_id, created_at=now or utcnow())
    try:
        with conn.begin_nested():
            return int(conn.execute(insert(messages).values(**values).returning(messages.c.id)).scalar_one())
    except IntegrityError:
        return None


def for_claim(conn: Connection, cipher: FieldCipher, claim_id: int, *, after_id: int = 0) -> list[dict[str, Any]]:
    """A claim's messages after ``after_id``, oldest first, text decrypted."""
    rows = conn.execute(select(messages).where(messages.c.claim_id == claim_id, messages.c.id > after_id)
                        .order_by(messages.c.id)).mappings()
    return [{**r, "text": cipher.decrypt(r["text"], _aad(r["claim_id"], r["direction"])).decode()} for r in rows]


def text_of(conn: Connection, cipher: FieldCipher, message_id: int, claim_id: int) -> str | None:
    """One outbound message's text, decrypted; None if there is no such message of that claim (erased)."""
    blob = conn.execute(select(messages.c.text).where(messages.c.id == message_id, messages.c.claim_id == claim_id,
                                                      messages.c.direction == "to_partner")).scalar_one_or_none()
    return None if blob is None else cipher.decrypt(blob, _aad(claim_id, "to_partner")).decode()
