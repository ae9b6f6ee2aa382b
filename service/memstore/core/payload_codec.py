"""How a payload is kept at rest: plain JSON, or an envelope holding it zstd-compressed
and/or AES-256-GCM-encrypted. Pure: no I/O, no key storage (``backends/sealed.py`` finds
the keys and calls these functions for every stored payload of every backend).

The stored form of a sealed payload is a JSON object with one reserved key::

    {"memstore:sealed": {"v": 1, "c": "zstd", "k": "<data key id>", "n": 5123, "b": "<base64>"}}

``c`` (codec) is present when the body is compressed, ``k`` when it is encrypted (the id of
the namespace's data key; the key id stored with each record), ``n`` is the logical size
(the compact JSON's bytes), ``b`` the body (``nonce || ciphertext+tag`` when encrypted).
The envelope is itself JSON, so every backend stores it as it stores any payload (SQLite
text, a field of a Redis record, a MongoDB subdocument) and nothing else changes shape.
Anything without the reserved key is the plain JSON written before (or below the
compression threshold without encryption) and reads as before. A plain payload that is
itself an object with the reserved key is written in an envelope (``b`` = its JSON), so
what a reader sees is never ambiguous.

A few fields stay in clear next to the envelope where a server-side computation reads
them (``clear``: the numeric ``rating`` of a feedback record, read by the feedback
analytics in SQL, Lua and aggregation pipelines).

Encryption binds each ciphertext to where it is stored: the associated data is the
format version, the key id, the codec and the caller's ``aad`` (namespace, kind and the
record's key), so a ciphertext copied onto another record, namespace or kind does not
decrypt. Compression runs before encryption.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memstore.core.errors import ConfigurationError, PayloadUnreadableError

#: The reserved key of a stored envelope.
ENVELOPE_KEY = "memstore:sealed"
FORMAT_VERSION = 1
ZSTD = "zstd"
#: zstd level 3 (the library's default): most of the ratio of higher levels on JSON at a
#: fraction of their CPU (bench/atrest.py measures it).
ZSTD_LEVEL = 3
NONCE_BYTES = 12
KEY_BYTES = 32
#: Bytes an envelope adds around its base64 body (the reserved key and the header fields).
ENVELOPE_OVERHEAD = 64
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class DataKey:
    """A namespace's data-encryption key. The secret never appears in a repr."""

    key_id: str
    secret: bytes = field(repr=False)
    # The cipher, set up once per key rather than once per payload.
    aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aead", AESGCM(self.secret))


class _Zstd(threading.local):
    """A compressor and a decompressor per thread: setting one up costs more than
    compressing a few kilobytes, and they are not thread-safe."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


_zstd = _Zstd()


@dataclass(frozen=True)
class KeyEncryptionKeys:
    """The key-encryption keys (KEKs) by id; ``primary`` wraps new and rotated data keys,
    the others only unwrap (kept so that keys wrapped before a rotation still open)."""

    primary: str
    keys: dict[str, bytes] = field(repr=False)

    def __repr__(self) -> str:
        return f"KeyEncryptionKeys(primary={self.primary!r}, ids={sorted(self.keys)!r})"


def parse_kek_file(text: str) -> KeyEncryptionKeys:
    """Read a KEK file: one ``<id>:<base64 of 32 bytes>`` per line, ``#`` comments and
    blank lines ignored; the first key is the primary. Errors never quote a key."""
    keys: dict[str, bytes] = {}
    primary = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, encoded = line.partition(":")
        key_id = key_id.strip()
        if not sep or not KEY_ID_RE.match(key_id):
            raise ConfigurationError(
                f"encryption key file, line {number}: expected <id>:<base64 key>, the id "
                "of letters, digits, '_', '.', '-'"
            )
        try:
            secret = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"encryption key file, line {number} (key {key_id!r}): not base64"
            ) from None
        if len(secret) != KEY_BYTES:
            raise ConfigurationError(
                f"encryption key file, line {number} (key {key_id!r}): a key is "
                f"{KEY_BYTES} bytes, this one is {len(secret)}"
            )
        if key_id in keys:
            raise ConfigurationError(f"encryption key file: key id {key_id!r} appears twice")
        keys[key_id] = secret
        primary = primary or key_id
    if not keys:
        raise ConfigurationError("encryption key file holds no key")
    return KeyEncryptionKeys(primary=primary, keys=keys)


def new_kek_line(key_id: str) -> str:
    """A fresh line for a KEK file (``memstore keys new-kek``)."""
    if not KEY_ID_RE.match(key_id):
        raise ConfigurationError("a key id is letters, digits, '_', '.', '-' (at most 64)")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def new_data_key() -> DataKey:
    return DataKey(key_id=os.urandom(8).hex(), secret=os.urandom(KEY_BYTES))


def _wrap_aad(namespace: str, key_id: str, kek_id: str) -> bytes:
    return b"\0".join((b"memstore-data-key", namespace.encode(), key_id.encode(), kek_id.encode()))


def wrap_data_key(keks: KeyEncryptionKeys, namespace: str, key: DataKey) -> dict[str, Any]:
    """The stored form of a data key: wrapped by the primary KEK, bound to its namespace."""
    nonce = os.urandom(NONCE_BYTES)
    kek = AESGCM(keks.keys[keks.primary])
    wrapped = nonce + kek.encrypt(nonce, key.secret, _wrap_aad(namespace, key.key_id, keks.primary))
    return {
        "key_id": key.key_id,
        "kek_id": keks.primary,
        "wrapped": base64.b64encode(wrapped).decode(),
    }


def unwrap_data_key(keks: KeyEncryptionKeys, namespace: str, stored: dict[str, Any]) -> DataKey:
    try:
        key_id, kek_id = str(stored["key_id"]), str(stored["kek_id"])
        wrapped = base64.b64decode(stored["wrapped"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise PayloadUnreadableError(
            f"the stored data key of namespace {namespace!r} is malformed"
        ) from None
    kek = keks.keys.get(kek_id)
    if kek is None:
        raise ConfigurationError(
            f"the data key of namespace {namespace!r} is wrapped by key-encryption key "
            f"{kek_id!r}, which the encryption key file does not hold (keep old keys in the "
            "file until `memstore keys rotate` has re-wrapped every data key)"
        )
    try:
        secret = AESGCM(kek).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(namespace, key_id, kek_id)
        )
    except InvalidTag:
        raise PayloadUnreadableError(
            f"the data key of namespace {namespace!r} does not open with key-encryption "
            f"key {kek_id!r}"
        ) from None
    return DataKey(key_id=key_id, secret=secret)


def record_aad(namespace: str, kind: str, *key: str) -> bytes:
    """What a ciphertext is bound to: its namespace, kind and the record's key."""
    return b"\0".join(part.encode() for part in (namespace, kind, *key))


def _payload_aad(aad: bytes, key_id: str, codec: str) -> bytes:
    return b"\0".join(
        (b"memstore-payload", str(FORMAT_VERSION).encode(), key_id.encode(), codec.encode(), aad)
    )


def is_envelope(stored: Any) -> bool:
    return isinstance(stored, dict) and isinstance(stored.get(ENVELOPE_KEY), dict)


def seal(
    value_json: bytes,
    *,
    compress_min_bytes: int,
    key: DataKey | None,
    aad: bytes,
    clear: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The envelope to store for a payload's compact JSON, or ``None`` to store it plain
    (no key, and below ``compress_min_bytes`` or ``0`` = compression off, and not itself
    envelope-shaped). ``clear``: fields copied next to the envelope, in clear."""
    codec = ""
    body = value_json
    if compress_min_bytes > 0 and len(value_json) >= compress_min_bytes:
        compressed = _zstd.compressor.compress(value_json)
        # Kept only when the envelope (base64 body, header) is smaller than the plain JSON.
        if (len(compressed) + 2) // 3 * 4 + ENVELOPE_OVERHEAD < len(value_json):
            codec, body = ZSTD, compressed
    if key is None and not codec and ENVELOPE_KEY.encode() not in value_json:
        return None
    if key is None and not codec and not is_envelope(orjson.loads(value_json)):
        return None
    header: dict[str, Any] = {"v": FORMAT_VERSION}
    if codec:
        header["c"] = codec
    if key is not None:
        nonce = os.urandom(NONCE_BYTES)
        body = nonce + key.aead.encrypt(nonce, body, _payload_aad(aad, key.key_id, codec))
        header["k"] = key.key_id
    header["n"] = len(value_json)
    header["b"] = base64.b64encode(body).decode()
    return {**(clear or {}), ENVELOPE_KEY: header}


def envelope_key_id(stored: Any) -> str | None:
    """The data key id an envelope was encrypted with; ``None`` for plain or unencrypted."""
    if not is_envelope(stored):
        return None
    key_id = stored[ENVELOPE_KEY].get("k")
    return str(key_id) if key_id is not None else None


def logical_size(stored: Any) -> int | None:
    """The payload's own JSON size as stored in its envelope; ``None`` when plain."""
    if not is_envelope(stored):
        return None
    n = stored[ENVELOPE_KEY].get("n")
    return n if isinstance(n, int) else None


@dataclass(frozen=True)
class Sealer:
    """Seals and opens payloads with one data key outside the store (a dump's payloads):
    every payload is sealed, and one that is not, or is sealed with another key, does not
    open."""

    key: DataKey
    compress_min_bytes: int = 0
    #: The key as stored, wrapped by a KEK (``wrap_data_key``): what a dump exported with
    #: its key carries.
    wrapped: dict[str, Any] | None = field(default=None, repr=False)

    def seal(self, value: Any, aad: bytes) -> dict[str, Any]:
        envelope = seal(
            orjson.dumps(value), compress_min_bytes=self.compress_min_bytes, key=self.key, aad=aad
        )
        if envelope is None:  # pragma: no cover - with a key, seal always makes an envelope
            raise PayloadUnreadableError("a payload could not be sealed")
        return envelope

    def open(self, stored: Any, aad: bytes) -> Any:
        if envelope_key_id(stored) != self.key.key_id:
            raise PayloadUnreadableError("a payload is not sealed with the data key it should be")
        return open_sealed(stored, key=self.key, aad=aad)


def open_sealed(stored: Any, *, key: DataKey | None, aad: bytes) -> Any:
    """The payload a stored value holds: plain values as they are, envelopes opened with
    ``key`` (the data key whose id :func:`envelope_key_id` named)."""
    if not is_envelope(stored):
        return stored
    header = stored[ENVELOPE_KEY]
    if header.get("v") != FORMAT_VERSION:
        raise PayloadUnreadableError(f"stored payload format {header.get('v')!r} is unknown")
    codec = str(header.get("c") or "")
    try:
        body = base64.b64decode(header["b"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise PayloadUnreadableError("a stored payload envelope is malformed") from None
    key_id = header.get("k")
    if key_id is not None:
        if key is None or key.key_id != key_id:
            raise PayloadUnreadableError("a stored payload was opened with the wrong data key")
        try:
            body = key.aead.decrypt(
                body[:NONCE_BYTES], body[NONCE_BYTES:], _payload_aad(aad, key.key_id, codec)
            )
        except InvalidTag:
            raise PayloadUnreadableError(
                "a stored payload does not authenticate: it was altered or moved from "
                "another record"
            ) from None
    if codec == ZSTD:
        try:
            body = _zstd.decompressor.decompress(body)
        except zstandard.ZstdError:
            raise PayloadUnreadableError("a stored payload does not decompress") from None
    elif codec:
        raise PayloadUnreadableError(f"stored payload codec {codec!r} is unknown")
    return orjson.loads(body)
