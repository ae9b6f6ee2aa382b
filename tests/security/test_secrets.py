"""Planted secrets never show in logs, reprs, error messages or responses.

Real ``memstore serve`` processes run with a planted Redis password, MongoDB URI
credentials and bearer tokens, at DEBUG level, on every backend (Redis and MongoDB pointed
at a closed port, so connection errors are logged and answered); the test drives requests
that succeed and fail, stops the process, then greps everything it produced.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from memstore.client import MemoryClient
from memstore.core.settings import Settings
from memstore.server.auth import TokenStore
from tests.security.conftest import write_tokens_file
from tests.support.procs import ServiceProcess, free_port


def planted() -> dict[str, str]:
    tag = secrets.token_hex(6)
    return {
        "redis_password": f"redis-pw-{tag}",
        "mongo_password": f"mongo-pw-{tag}",
        "token": f"tok-{tag}-{secrets.token_urlsafe(12)}",
        "wrong_token": f"wrong-{tag}",
    }


def call(url: str, method: str = "GET", token: str | None = None, body: bytes | None = None) -> str:
    req = urllib.request.Request(url, method=method, data=body)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return f"{resp.status} {dict(resp.headers)} {resp.read().decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {dict(exc.headers)} {exc.read().decode(errors='replace')}"


def assert_clean(text: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        assert value not in text, f"planted {name} leaked"


def test_settings_and_objects_never_show_secrets(tmp_path: Path) -> None:
    values = planted()
    uri = f"mongodb://agent:{values['mongo_password']}@db.example:27017/"
    settings = Settings(REDIS_PASSWORD=values["redis_password"], MONGODB_URI=uri)
    tokens_file = write_tokens_file(
        tmp_path / "tokens.json", [("t", values["token"], ["*"], ["read"])]
    )
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
        f"{settings}",
        repr(TokenStore(tokens_file)),
        tokens_file.read_text(),
        repr(MemoryClient("http://127.0.0.1:1", token=values["token"])),
    ):
        assert_clean(text, values)
    # The values are still there for the code that needs them.
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == values["redis_password"]


@pytest.mark.parametrize("memory_type", ["embedded", "redis", "mongodb"])
def test_a_running_service_never_logs_or_answers_secrets(tmp_path: Path, memory_type: str) -> None:
    values = planted()
    closed = free_port()
    tokens_file = write_tokens_file(
        tmp_path / "tokens.json",
        [("agent", values["token"], ["agent"], ["read", "write"])],
    )
    env = {
        "MEMORY_TYPE": memory_type,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(closed),
        "REDIS_PASSWORD": values["redis_password"],
        "MONGODB_URI": f"mongodb://agent:{values['mongo_password']}@127.0.0.1:{closed}/"
        "?serverSelectionTimeoutMS=500&connectTimeoutMS=500",
        "MEMSTORE_AUTH_ENABLED": "true",
        "MEMSTORE_AUTH_TOKENS_FILE": str(tokens_file),
        "MEMSTORE_LOG_LEVEL": "DEBUG",
        "MEMSTORE_REQUEST_TIMEOUT_SECONDS": "5",
    }
    svc = ServiceProcess(tmp_path / "svc", env)
    answers: list[str] = []
    try:
        svc.start()
    except RuntimeError:
        # The backend's module is not there (yet): the process refused to start; its
        # last words must be clean too.
        assert "configuration_error" in svc.logs()
        assert_clean(svc.logs(), values)
        return
    try:
        base = svc.url
        ns = f"{base}/v1/namespaces/agent"
        answers += [
            call(f"{base}/readyz"),
            call(f"{base}/metrics"),
            call(f"{base}/openapi.json"),
            call(f"{ns}/entities", token=values["token"]),
            call(f"{ns}/entities", token=values["wrong_token"]),
            call(f"{ns}/entities", token=values["redis_password"]),
            call(f"{base}/v1/namespaces/other/entities", token=values["token"]),
            call(f"{base}/v1/metrics", token=values["token"]),
            call(
                f"{ns}/entities/note/n1",
                "PUT",
                values["token"],
                orjson.dumps({"data": {"ok": True}}),
            ),
            call(f"{ns}/entities/note/n1", "PUT", values["token"], b"{not json"),
            call(f"{ns}/entities/note/n1", "PUT", values["token"], b'{"data": 1, "x": 2}'),
            call(f"{ns}/entities/note/missing", token=values["token"]),
            call(f"{ns}/summary", token=values["token"]),
        ]
    finally:
        svc.stop()
    logs = svc.logs()
    assert "authentication" not in logs or "disabled" not in logs  # auth was on
    if memory_type != "embedded":
        # The backend was down: the service said so (503, unready), without secrets.
        assert any(a.startswith("503") for a in answers), answers
    assert any(a.startswith("401") for a in answers)
    assert_clean(logs, values)
    assert_clean("\n".join(answers), values)
