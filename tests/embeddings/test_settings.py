"""The embedder's settings: what each one cannot start without is refused at start-up,
and ``memstore serve`` says so in one line (no traceback, no secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from memstore.core.settings import SearchSettings, Settings
from tests.support.procs import free_port

SECRET = "sk-never-print-this-0123456789"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"MEMSTORE_EMBEDDER": "local"},
            "MEMSTORE_EMBEDDER=local needs MEMSTORE_EMBEDDER_MODEL_PATH",
        ),
        (
            {"MEMSTORE_EMBEDDER": "local", "MEMSTORE_EMBEDDER_MODEL_PATH": "/no/such/model"},
            "MEMSTORE_EMBEDDER_MODEL_PATH: Path does not point to a directory",
        ),
        (
            {"MEMSTORE_EMBEDDER": "openai", "MEMSTORE_EMBEDDER_API_KEY": SECRET},
            "MEMSTORE_EMBEDDER=openai needs MEMSTORE_EMBEDDER_URL and MEMSTORE_EMBEDDER_MODEL",
        ),
        (
            {
                "MEMSTORE_EMBEDDER": "openai",
                "MEMSTORE_EMBEDDER_URL": "http://127.0.0.1:11434/v1",
                "MEMSTORE_EMBEDDER_API_KEY": SECRET,
            },
            "MEMSTORE_EMBEDDER=openai needs MEMSTORE_EMBEDDER_MODEL",
        ),
        (
            {
                "MEMSTORE_EMBEDDER": "openai",
                "MEMSTORE_EMBEDDER_URL": "127.0.0.1:11434",
                "MEMSTORE_EMBEDDER_MODEL": "nomic-embed-text",
                "MEMSTORE_EMBEDDER_API_KEY": SECRET,
            },
            "MEMSTORE_EMBEDDER_URL must be an http:// or https:// URL",
        ),
        ({"MEMSTORE_EMBEDDER": "fasttext"}, "MEMSTORE_EMBEDDER: Input should be"),
    ],
)
def test_serve_refuses_an_incomplete_embedder(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memstore", "serve"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMSTORE_EMBEDDER")},
            "MEMSTORE_DATA_PATH": str(tmp_path / "memstore.db"),
            "MEMSTORE_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: invalid settings: {expected}")
    assert SECRET not in result.stderr + result.stdout


def test_errors_never_quote_the_input() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(MEMSTORE_EMBEDDER="openai", MEMSTORE_EMBEDDER_API_KEY=SECRET)
    assert SECRET not in str(raised.value)
    assert SECRET not in repr(raised.value)


def test_complete_settings_are_accepted(tmp_path: Path) -> None:
    assert SearchSettings().embedder == "wordllama"
    local = SearchSettings(MEMSTORE_EMBEDDER="local", MEMSTORE_EMBEDDER_MODEL_PATH=tmp_path)
    assert local.embedder_model_path == tmp_path
    remote = SearchSettings(
        MEMSTORE_EMBEDDER="openai",
        MEMSTORE_EMBEDDER_URL="http://127.0.0.1:11434/v1",
        MEMSTORE_EMBEDDER_MODEL="nomic-embed-text",
        MEMSTORE_EMBEDDER_API_KEY=SECRET,
    )
    assert remote.embedder_api_key is not None
    assert SECRET not in repr(remote)
