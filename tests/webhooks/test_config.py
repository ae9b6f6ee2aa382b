"""Pure pieces of the webhooks: the checks, the file format, reprs, the backoff."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from memstore.core.errors import ConfigurationError, InvalidInputError
from memstore.core.records import ChangeEvent
from memstore.server.schemas import WebhookPut
from memstore.server.webhooks.config import (
    Webhook,
    check_secret,
    check_url,
    generate_secret,
    load_webhooks_file,
    parse_webhooks_file,
)
from memstore.server.webhooks.deliverer import backoff_seconds
from memstore.server.webhooks.signing import Signer

SECRET = "whsec_" + base64.b64encode(b"unit-test-secret-0123456789ab").decode()


def test_secrets_are_never_in_a_repr() -> None:
    hook = Webhook("ns", "h", "http://127.0.0.1/x", SecretStr(SECRET))
    body = WebhookPut.model_validate({"url": "http://127.0.0.1/x", "secret": SECRET})
    key_part = SECRET.removeprefix("whsec_")
    for shown in (repr(hook), str(hook), repr(body), str(body), repr(Signer(hook.secret))):
        assert key_part not in shown
    assert hook.public()["secret"] == "**********"


def test_generated_secrets_follow_the_spec() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    raw = first.get_secret_value()
    assert raw.startswith("whsec_")
    assert len(base64.b64decode(raw.removeprefix("whsec_"))) == 32
    assert check_secret(raw) == first


@pytest.mark.parametrize("n", [23, 65])
def test_secrets_outside_24_to_64_bytes_are_refused(n: int) -> None:
    bad = "whsec_" + base64.b64encode(b"x" * n).decode()
    with pytest.raises(InvalidInputError) as caught:
        check_secret(bad)
    assert caught.value.details == {"field": "secret"}
    assert bad not in caught.value.message


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "https://hooks.example/in?x=1#f", "HTTPS://h", "http://h:65535"],
)
def test_good_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "h/x",
        "ftp://h/",
        "http://",
        "http://h:65536/",
        "http://u@h/",
        "http://h/\x01",
        "a" * 3000,
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_url(url)
    assert caught.value.details == {"field": "url"}


def test_filters() -> None:
    hook = Webhook("ns", "h", "http://h/", SecretStr(SECRET), ("entity.saved",), ("note",))
    saved_note = ChangeEvent(1, "entity.saved", 0.0, entity_type="note", entity_id="a")
    saved_task = ChangeEvent(2, "entity.saved", 0.0, entity_type="task", entity_id="a")
    deleted_note = ChangeEvent(3, "entity.deleted", 0.0, entity_type="note", entity_id="a")
    appended = ChangeEvent(4, "conversation.appended", 0.0, conversation_id="c")
    assert [hook.matches(e) for e in (saved_note, saved_task, deleted_note, appended)] == [
        True,
        False,
        False,
        False,
    ]
    everything = Webhook("ns", "h", "http://h/", SecretStr(SECRET))
    assert all(everything.matches(e) for e in (saved_note, saved_task, deleted_note, appended))


def test_the_file_takes_a_secret_or_a_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "0").write_text(SECRET + "\n")
    doc = {
        "webhooks": [
            {"name": "a", "namespace": "n", "url": "http://h/", "secret_file": "secrets/0"},
            {"name": "b", "namespace": "n", "url": "http://h/", "secret": SECRET},
        ]
    }
    path = tmp_path / "webhooks.json"
    path.write_bytes(orjson.dumps(doc))
    a, b = load_webhooks_file(path)
    assert a.secret == b.secret == SecretStr(SECRET)
    assert (a.source, b.source) == ("file", "file")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"name": "a", "namespace": "n", "url": "http://h/"}, "give one of secret and"),
        (
            {"name": "a", "namespace": "n", "url": "http://h/", "secret": SECRET, "x": 1},
            "unknown field x",
        ),
        ({"name": "a", "namespace": "_n", "url": "http://h/", "secret": SECRET}, "namespace"),
        ({"name": "a", "namespace": "n", "url": "http://h/", "secret": SECRET[:-3]}, "secret"),
        (
            {"name": "a", "namespace": "n", "url": "http://h/", "secret_file": "missing"},
            "cannot be read",
        ),
    ],
)
def test_a_bad_file_names_the_entry_never_the_secret(
    tmp_path: Path, entry: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_webhooks_file(orjson.dumps({"webhooks": [entry]}), "f.json", tmp_path)
    assert "webhooks[0]" in caught.value.message
    assert problem in caught.value.message
    assert SECRET.removeprefix("whsec_")[:20] not in caught.value.message


def test_a_pair_named_twice_in_the_file_is_refused() -> None:
    entry = {"name": "a", "namespace": "n", "url": "http://h/", "secret": SECRET}
    with pytest.raises(ConfigurationError, match="appears twice"):
        parse_webhooks_file(orjson.dumps({"webhooks": [entry, entry]}), "f.json")


def test_backoff_grows_is_capped_and_jittered() -> None:
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)):
        waits = {backoff_seconds(attempt, 1.0, 30.0) for _ in range(200)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # drawn, not fixed
