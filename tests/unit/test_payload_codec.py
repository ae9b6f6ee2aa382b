"""The at-rest payload codec (pure) and that no key material reaches a repr or a log."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import orjson
import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.backends.sealed import PASSTHROUGH_METHODS, SealedBackend, build_sealed
from memstore.core import payload_codec as codec
from memstore.core.errors import ConfigurationError, PayloadUnreadableError
from memstore.core.settings import Settings

KEY = codec.DataKey("d1", bytes(range(32)))
AAD = codec.record_aad("ns", "entity", "profile", "p1")


def test_small_payloads_stay_plain_and_large_ones_compress() -> None:
    small = orjson.dumps({"a": 1})
    assert codec.seal(small, compress_min_bytes=64, key=None, aad=AAD) is None
    large = orjson.dumps({"text": "agents remember things " * 100})
    envelope = codec.seal(large, compress_min_bytes=64, key=None, aad=AAD)
    assert envelope is not None and envelope[codec.ENVELOPE_KEY]["c"] == "zstd"
    assert len(orjson.dumps(envelope)) * 5 < len(large)
    assert codec.logical_size(envelope) == len(large)
    assert codec.open_sealed(envelope, key=None, aad=AAD) == orjson.loads(large)
    # Off: nothing compresses.
    assert codec.seal(large, compress_min_bytes=0, key=None, aad=AAD) is None


def test_incompressible_payloads_are_not_stored_bigger() -> None:
    noise = orjson.dumps({"b": base64.b64encode(os.urandom(600)).decode()})
    envelope = codec.seal(noise, compress_min_bytes=16, key=None, aad=AAD)
    assert envelope is None


def test_a_plain_payload_shaped_like_an_envelope_is_kept_unambiguous() -> None:
    tricky = {codec.ENVELOPE_KEY: {"v": 1, "b": "AAAA"}}
    raw = orjson.dumps(tricky)
    envelope = codec.seal(raw, compress_min_bytes=0, key=None, aad=AAD)
    assert envelope is not None and envelope != tricky
    assert codec.open_sealed(envelope, key=None, aad=AAD) == tricky


@pytest.mark.parametrize(
    "value",
    [{"name": "Grüße 東京 🧠"}, ["a", 1, None], "text", 3.5, None, {"deep": [[[{"x": []}]]]}],
)
def test_encrypted_round_trip(value: object) -> None:
    raw = orjson.dumps(value)
    envelope = codec.seal(raw, compress_min_bytes=0, key=KEY, aad=AAD)
    assert envelope is not None and codec.envelope_key_id(envelope) == "d1"
    assert raw not in orjson.dumps(envelope)
    assert codec.open_sealed(envelope, key=KEY, aad=AAD) == value


def test_a_ciphertext_is_bound_to_its_record_and_key() -> None:
    envelope = codec.seal(b'{"secret":1}', compress_min_bytes=0, key=KEY, aad=AAD)
    other = codec.record_aad("ns", "entity", "profile", "p2")
    with pytest.raises(PayloadUnreadableError, match="moved"):
        codec.open_sealed(envelope, key=KEY, aad=other)
    with pytest.raises(PayloadUnreadableError):
        codec.open_sealed(envelope, key=codec.DataKey("d1", bytes(32)), aad=AAD)
    with pytest.raises(PayloadUnreadableError, match="wrong data key"):
        codec.open_sealed(envelope, key=codec.DataKey("d2", bytes(32)), aad=AAD)
    assert envelope is not None
    tampered = {codec.ENVELOPE_KEY: {**envelope[codec.ENVELOPE_KEY], "c": "zstd"}}
    with pytest.raises(PayloadUnreadableError):
        codec.open_sealed(tampered, key=KEY, aad=AAD)


def test_data_keys_wrap_per_namespace() -> None:
    keks = codec.parse_kek_file(codec.new_kek_line("k1") + "\n")
    key = codec.new_data_key()
    wrapped = codec.wrap_data_key(keks, "tenant-a", key)
    assert codec.unwrap_data_key(keks, "tenant-a", wrapped) == key
    with pytest.raises(PayloadUnreadableError):  # a wrapped key moved to another namespace
        codec.unwrap_data_key(keks, "tenant-b", wrapped)
    other = codec.parse_kek_file(codec.new_kek_line("k2"))
    with pytest.raises(ConfigurationError, match="'k1'"):
        codec.unwrap_data_key(other, "tenant-a", wrapped)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no key"),
        ("# only a comment\n", "no key"),
        ("k1 c2VjcmV0\n", "line 1"),
        ("k1:not base64!\n", "not base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "32 bytes"),
        (codec.new_kek_line("k1") + "\n" + codec.new_kek_line("k1"), "twice"),
    ],
)
def test_kek_file_errors_name_the_line_never_the_key(text: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        codec.parse_kek_file(text)
    for line in text.splitlines():
        secret = line.partition(":")[2]
        if len(secret) > 8:
            assert secret not in caught.value.message


def test_first_key_is_primary_and_comments_are_skipped() -> None:
    keks = codec.parse_kek_file(
        "# rotated 2026-12\n" + codec.new_kek_line("new") + "\n\n" + codec.new_kek_line("old")
    )
    assert keks.primary == "new" and set(keks.keys) == {"new", "old"}


def test_no_key_material_in_reprs_settings_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    line = codec.new_kek_line("k1")
    secret_b64 = line.partition(":")[2]
    secret = base64.b64decode(secret_b64)
    key_file = tmp_path / "kek"
    key_file.write_text(line + "\n")
    settings = Settings(
        memory_type="embedded",
        data_path=tmp_path / "m.db",
        encryption_key_file=key_file,
        compression_min_bytes=1024,
    )
    backend = build_sealed(EmbeddedMemoryBackend(settings), settings)
    assert isinstance(backend, SealedBackend) and backend.encrypts
    keks = codec.parse_kek_file(line)
    data_key = codec.new_data_key()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("memstore").info("backend", extra={"backend": backend.describe()})
    texts = [
        repr(settings),
        str(settings),
        repr(settings.model_dump()),
        repr(backend),
        repr(backend.describe()),
        repr(keks),
        repr(data_key),
        caplog.text,
    ]
    for text in texts:
        assert secret_b64 not in text
        assert repr(secret) not in text
        assert data_key.secret.hex() not in text and repr(data_key.secret) not in text
    assert "k1" in repr(keks)


def test_without_compression_or_keys_the_backend_is_not_wrapped(tmp_path: Path) -> None:
    settings = Settings(memory_type="embedded", data_path=tmp_path / "m.db")
    inner = EmbeddedMemoryBackend(settings)
    assert build_sealed(inner, settings) is inner


def test_an_unreadable_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    key_file = tmp_path / "kek"
    key_file.write_text("k1:AAAA\n")
    settings = Settings(
        memory_type="embedded", data_path=tmp_path / "m.db", encryption_key_file=key_file
    )
    with pytest.raises(ConfigurationError, match="32 bytes"):
        build_sealed(EmbeddedMemoryBackend(settings), settings)


def test_every_contract_method_is_sealed_or_deliberately_passed_through() -> None:
    """A method added to the backend contract must be sealed in SealedBackend (it carries
    payloads) or listed in PASSTHROUGH_METHODS (it does not): this names the ones that are
    neither."""
    contract = {
        name
        for name, member in vars(DistributedMemoryBackend).items()
        if callable(member) and not name.startswith("_")
    }
    generated = {
        name
        for name, member in vars(SealedBackend).items()
        if getattr(member, "passthrough", False)
    }
    assert contract <= set(vars(SealedBackend))
    undecided = generated - PASSTHROUGH_METHODS
    assert not undecided, f"decide how SealedBackend treats: {sorted(undecided)}"
    assert contract >= PASSTHROUGH_METHODS
