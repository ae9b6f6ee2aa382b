"""``memstore serve`` with bad settings: one line naming the setting, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import free_port


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MEMSTORE_LOG_LEVEL": "verbose"}, "MEMSTORE_LOG_LEVEL"),
        ({"MEMSTORE_CACHE_TTL_SECONDS": "soon"}, "MEMSTORE_CACHE_TTL_SECONDS"),
    ],
)
def test_bad_setting_is_one_line(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memstore", "serve"],
        env={
            **os.environ,
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
    assert lines[0].startswith("Error: invalid settings: ")
    assert expected in lines[0]


def test_log_level_is_case_insensitive() -> None:
    from memstore.core.settings import Settings

    assert Settings(log_level="debug").log_level == "DEBUG"
