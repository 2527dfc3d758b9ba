"""The gateway's signing key and certificate renewed in place, one file after the other, while the dispatcher runs.

Since 56f6e35 both are loaded again when their files change. Between the two replacements the key is new and the
certificate old: a batch signed then carried a certificate its signature does not verify against (the CMS builder
signs with any pair) and went out as delivered, which the agency could not check. It now waits, with a clear
error on the row, and goes out once both are in place. A real dispatcher, real key files, the batch opened with the
partner's key."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from gateway.bootstrap import App
from gateway.crypto.certs import (load_cert, load_private_key, new_rsa_key, self_signed_cert, write_cert,
                                  write_private_key)
from gateway.crypto.cms import decrypt
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.integration.test_dispatch import DEMO, clock, partner_dir  # noqa: F401
from tests.support import Clock


def _spki(cert_or_key: object) -> bytes:
    return cert_or_key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_batch_waits_while_the_signing_key_and_its_certificate_do_not_belong_together(
        app: App, clock: Clock) -> None:  # noqa: F811
    worker = Dispatcher(app, owner="t1")
    new_key = new_rsa_key(2048)
    write_private_key(app.signing_key_path, new_key)  # the key is renewed first; its certificate comes next
    ingest_file(app, DEMO, "demo")
    assert worker.run_once()
    with read_tx(app.engine) as conn:
        [row] = outbox_store.listing(conn)
    assert row["status"] == "pending", row
    assert "is not the certificate of" in row["last_error"] and "gateway-signing.key" in row["last_error"], row
    assert list(partner_dir(app).glob("*.p7m")) == []  # nothing went out signed with a pair that does not verify

    new_cert = self_signed_cert(new_key, "gw-test batch signing", usage="signing", days=30)
    write_cert(app.signing_cert_path, new_cert)
    clock.advance(3600)
    assert worker.drain() == 1  # the same dispatcher, once both files are in place
    [batch] = partner_dir(app).glob("*.p7m")
    keys = app.config.keys_dir / "partners"
    signed = decrypt(batch.read_bytes(), load_cert(keys / "demo-agency.crt"), load_private_key(keys / "demo-agency.key"))
    [embedded] = pkcs7.load_der_pkcs7_certificates(signed)
    assert _spki(embedded) == _spki(new_key)
