"""Adapter edges the contract test does not cover: pinned host keys, config errors, 4xx is final."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from adapters import load_adapter
from adapters.base import Batch, NotSupported, Operation
from adapters.mail import EmailAdapter
from adapters.rest import HttpAdapter
from adapters.sftp import SftpAdapter
from adapters.simulators.agency import Agency, Fault
from adapters.simulators.email_sim import EmailAgencySimulator
from adapters.simulators.http_sim import HttpAgencySimulator
from adapters.simulators.sftp_sim import SftpAgencySimulator
from gateway.errors import ConfigError, DeliveryError


def batch() -> Batch:
    return Batch(batch_id="B-1", partner_id="p", filename="B-1.xml.p7m", payload=b"\x30\x80cms", claim_ids=[1, 2])


@pytest.fixture
def sftp_sim(tmp_path: Path) -> Iterator[tuple[SftpAgencySimulator, Path]]:
    client = asyncssh.generate_private_key("ssh-ed25519")
    key = tmp_path / "client"
    key.write_bytes(client.export_private_key())
    sim = SftpAgencySimulator(Agency("p"), tmp_path / "root", client.export_public_key().decode()).start()
    yield sim, key
    sim.stop()


def sftp(sim: SftpAgencySimulator, key: Path, host_key: str) -> SftpAdapter:
    return SftpAdapter("p", {"host": "127.0.0.1", "port": sim.port, "username": "gateway", "client_key": str(key),
                             "host_key": host_key, "timeout": 5})


def test_sftp_upload_is_renamed_into_place_and_confirmed_on_resend(sftp_sim: tuple[SftpAgencySimulator, Path],
                                                                   tmp_path: Path) -> None:
    sim, key = sftp_sim
    adapter = sftp(sim, key, sim.host_key_line)
    first = adapter.deliver(batch())
    # no .part left; the marker folder is the gateway's own
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == [".gateway-sent", "B-1.xml.p7m"]
    assert (tmp_path / "root" / "B-1.xml.p7m").read_bytes() == b"\x30\x80cms"
    assert first.detail.startswith("uploaded") and adapter.deliver(batch()).detail.startswith("confirmed existing")


def test_sftp_refuses_a_server_whose_host_key_is_not_the_pinned_one(sftp_sim: tuple[SftpAgencySimulator, Path],
                                                                    tmp_path: Path) -> None:
    sim, key = sftp_sim
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    with pytest.raises(DeliveryError, match="does not match the pinned key") as err:
        sftp(sim, key, other).deliver(batch())
    assert err.value.retryable is False
    assert not any((tmp_path / "root").iterdir())


@pytest.mark.parametrize(("alias", "options", "key"), [
    ("sftp", {"host": "h", "username": "u", "client_key": "/nonexistent"}, "host_key"),
    ("sftp", {"username": "u"}, "host"),
    ("http", {"url": "ftp://x"}, "url"),
    ("soap", {}, "wsdl"),
    ("email", {"host": "h", "to": "a@b"}, "from"),
])
def test_missing_or_bad_options_name_the_key(alias: str, options: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"partners\.p\.options\.{key}"):
        load_adapter(alias, "p", options)


def test_http_client_errors_are_final_and_server_errors_retryable() -> None:
    agency = Agency("p")
    sim = HttpAgencySimulator(agency).start()
    adapter = HttpAdapter("p", {"url": sim.url, "timeout": 5})
    try:
        op = Operation(operation="cancel", key="k", claim_id=404, partner_reference=None, data={"reason": "x"})
        with pytest.raises(DeliveryError, match="HTTP 404") as err:
            adapter.operate(op)
        assert err.value.retryable is False
        with pytest.raises(NotSupported):
            adapter.operate(Operation(operation="teleport", key="k", claim_id=1, partner_reference=None))
        agency.faults.fail_next(Fault.ERROR_503)
        with pytest.raises(DeliveryError, match="HTTP 503") as err:
            adapter.deliver(batch())
        assert err.value.retryable is True
        receipt = adapter.deliver(batch())
        assert receipt.references == {1: "AZ-p-0000001", 2: "AZ-p-0000002"}
        assert receipt.delivered_at.tzinfo is dt.timezone.utc
    finally:
        adapter.close()
        sim.stop()


def test_email_batch_is_an_smime_message_openssl_opens(tmp_path: Path) -> None:
    from gateway.crypto.certs import new_rsa_key, self_signed_cert, write_cert, write_private_key
    from gateway.crypto.cms import sign_and_encrypt

    gw_key, partner_key = new_rsa_key(2048), new_rsa_key(2048)
    gw_cert = self_signed_cert(gw_key, "gw signing", usage="signing")
    partner_cert = self_signed_cert(partner_key, "partner", usage="encryption")
    for name, key, cert in (("gw", gw_key, gw_cert), ("partner", partner_key, partner_cert)):
        write_private_key(tmp_path / f"{name}.key", key)
        write_cert(tmp_path / f"{name}.crt", cert)
    payload = sign_and_encrypt(b"<batch/>", signer_cert=gw_cert, signer_key=gw_key, recipients=[partner_cert])
    sim = EmailAgencySimulator(Agency("p"), "p").start()
    sim.keys = (partner_cert, partner_key)
    try:
        EmailAdapter("p", {"host": "127.0.0.1", "port": sim.port, "from": "gw@gw.example", "to": "akten@p.example",
                           "timeout": 5}).deliver(Batch(batch_id="B-7", partner_id="p", filename="B-7.xml.p7m",
                                                        payload=payload, claim_ids=[]))
    finally:
        sim.stop()
    [msg] = sim.messages
    assert msg.get_content_type() == "application/pkcs7-mime" and msg.get_param("smime-type") == "enveloped-data"
    (tmp_path / "mail.eml").write_bytes(msg.as_bytes())
    subprocess.run(["openssl", "cms", "-decrypt", "-in", str(tmp_path / "mail.eml"), "-recip",
                    str(tmp_path / "partner.crt"), "-inkey", str(tmp_path / "partner.key"), "-out",
                    str(tmp_path / "signed.der")], check=True, capture_output=True, timeout=60)
    verify = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "signed.der"),
                             "-CAfile", str(tmp_path / "gw.crt")], capture_output=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout == b"<batch/>"
