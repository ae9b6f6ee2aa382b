"""The JSON <-> BSON codec is exact and produces only keys MongoDB accepts."""

from __future__ import annotations

from typing import Any

import bson
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from memstore.backends.mongodb.codec import decode_key, decode_value, encode_key, encode_value

NASTY_KEYS = [
    "",
    "$",
    ".",
    "$set",
    "a.b",
    "$a.b$",
    "\\",
    "\\e",
    "\\i",
    "\\f",
    "\\a",
    "\\d",
    "\\\\p",
]
NASTY_KEYS += ["\x00", "a\x00b", "..", "$$", "é.ü", "🧠.$"]

keys = st.one_of(st.sampled_from(NASTY_KEYS), st.text(max_size=12))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 2**53 + 0.0, 5e-324]),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=40,
)


def _keys_ok(value: Any) -> bool:
    if isinstance(value, dict):
        return all(
            k and not k.startswith("$") and "." not in k and "\x00" not in k and _keys_ok(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_keys_ok(v) for v in value)
    return True


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_roundtrip_is_exact_through_bson(value: Any) -> None:
    encoded = encode_value({"v": value})
    assert _keys_ok(encoded)
    # Through real BSON bytes, as the server would store and return them.
    decoded = decode_value(bson.decode(bson.encode(encoded)))["v"]
    assert orjson.dumps(decoded) == orjson.dumps(value)


@given(keys)
def test_key_escape_is_a_bijection_on_seen_keys(key: str) -> None:
    assert decode_key(encode_key(key)) == key


def test_known_encodings() -> None:
    assert encode_key("plain_key") == "plain_key"
    assert encode_key("$x.y") == "\\dx\\py"
    assert encode_key("") == "\\e"
    assert encode_key("\\e") == "\\\\e"
    assert encode_value({"n": 2**64 - 1}) == {"n": {"\\i": "18446744073709551615"}}
    assert encode_value([-0.0]) == [{"\\f": "-0.0"}]
    assert encode_value({"m": [[1, [2]], 3]}) == {"m": [{"\\a": [1, {"\\a": [2]}]}, 3]}
    assert decode_value(encode_value([[[]]])) == [[[]]]
    # A user's object that looks like an encoded big int is not mistaken for one.
    tricky = {"\\i": "5", "\\f": "-0.0", "\\a": []}
    assert decode_value(encode_value(tricky)) == tricky
    for key in ("\\i", "\\f", "\\a"):
        assert decode_value(encode_value({key: []})) == {key: []}


def test_encoding_does_not_modify_the_input() -> None:
    value = {"$a": [{"b.c": 1}], "n": 2**64 - 1}
    snapshot = orjson.dumps(value)
    encode_value(value)
    assert orjson.dumps(value) == snapshot


def test_bson_blowup_bound_holds_for_adversarial_shapes() -> None:
    from memstore.backends.mongodb.backend import BSON_BLOWUP

    deep: Any = []
    for _ in range(30):
        deep = [deep]
    shapes: list[Any] = [[0] * 20_000, [[]] * 5000, [deep] * 200, [-0.0] * 5000, [{}] * 5000]
    shapes += [[""] * 5000, [None] * 5000, [{"$": 0}] * 5000, [2**64 - 1] * 1000]
    for value in shapes:
        ratio = len(bson.encode({"v": encode_value(value)})) / len(orjson.dumps(value))
        assert ratio < BSON_BLOWUP
