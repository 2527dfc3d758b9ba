"""CMS (S/MIME) for partners: SignedData by the gateway inside AES-256 EnvelopedData, DER encoded.

A partner opens a file with stock OpenSSL::

    openssl cms -decrypt -inform DER -in f -recip partner.crt -inkey partner.key -out signed.der
    openssl cms -verify -inform DER -in signed.der -CAfile gateway.crt -out plain.xml
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from gateway.errors import KeyStoreError

# Binary: without it the content is canonicalised to CRLF line endings (the signature builder) or
# wrapped in a MIME header (the envelope builder), and the partner would not get our bytes back.
_OPTIONS = (pkcs7.PKCS7Options.Binary,)


def sign_and_encrypt(
    content: bytes,
    *,
    signer_cert: x509.Certificate,
    signer_key: rsa.RSAPrivateKey,
    recipients: Sequence[x509.Certificate],
) -> bytes:
    """Sign content (SHA-256, signer cert embedded) and encrypt it with AES-256 to every recipient."""
    if not recipients:
        raise ValueError("at least one recipient certificate is required")
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(signer_cert, signer_key, hashes.SHA256())
        .sign(serialization.Encoding.DER, list(_OPTIONS))
    )
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(signed)
    builder = builder.set_content_encryption_algorithm(algorithms.AES256)
    for cert in recipients:
        builder = builder.add_recipient(cert)
    return builder.encrypt(serialization.Encoding.DER, list(_OPTIONS))


def decrypt(envelope: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    """Open the envelope and return the signed DER inside (for simulators and tests)."""
    try:
        return pkcs7.pkcs7_decrypt_der(envelope, cert, key, [])
    except ValueError as exc:
        raise KeyStoreError(f"CMS envelope does not decrypt with this certificate and key: {exc}") from exc
