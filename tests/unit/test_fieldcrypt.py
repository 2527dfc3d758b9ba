import base64
import json
import os

import pytest

from gateway.crypto.fieldcrypt import FieldCipher, load_field_cipher, new_key_file_content
from gateway.errors import KeyStoreError


def cipher(active: str = "k1", **keys: bytes) -> FieldCipher:
    return FieldCipher(keys or {"k1": os.urandom(32)}, active, os.urandom(32))


def test_round_trip_and_binding() -> None:
    c = cipher()
    blob = c.encrypt(b"Max Mustermann", b"claim:demo\x1fR-1")
    assert b"Mustermann" not in blob
    assert c.decrypt(blob, b"claim:demo\x1fR-1") == b"Max Mustermann"
    with pytest.raises(KeyStoreError, match="bound to another row"):
        c.decrypt(blob, b"claim:demo\x1fR-2")


def test_rotation_keeps_old_values_readable() -> None:
    k1, k2, idx = os.urandom(32), os.urandom(32), os.urandom(32)
    old = FieldCipher({"k1": k1}, "k1", idx).encrypt(b"x")
    new = FieldCipher({"k1": k1, "k2": k2}, "k2", idx)
    assert new.decrypt(old) == b"x"
    assert new.encrypt(b"y")[3:5] == b"k2"
    with pytest.raises(KeyStoreError, match="unknown key 'k2'"):
        FieldCipher({"k1": k1}, "k1", idx).decrypt(new.encrypt(b"y"))


def test_blind_index_is_normalised_and_keyed() -> None:
    c = cipher()
    assert c.blind_index("Max  Mustermann") == c.blind_index("max mustermann")
    assert cipher().blind_index("max mustermann") != c.blind_index("max mustermann")


def test_key_file_errors_are_clear(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path
    path = Path(str(tmp_path)) / "keys.json"
    with pytest.raises(KeyStoreError, match="gateway keys init"):
        load_field_cipher(path)
    path.write_text("{}")
    with pytest.raises(KeyStoreError, match="expected JSON"):
        load_field_cipher(path)
    doc = new_key_file_content()
    monkeypatch.setenv("TEST_KEYS", json.dumps(doc))
    c = load_field_cipher(path, "TEST_KEYS")
    assert c.decrypt(c.encrypt(b"ok")) == b"ok"
    doc["keys"] = {"k1": base64.b64encode(b"short").decode()}
    monkeypatch.setenv("TEST_KEYS", json.dumps(doc))
    with pytest.raises(KeyStoreError, match="32 bytes"):
        load_field_cipher(path, "TEST_KEYS")
