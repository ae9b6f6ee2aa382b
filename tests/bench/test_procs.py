"""``bench.procs.run_json_module``, through which ``make bench`` runs its bench modules in
processes of their own: a real child process (a small module written here) for each way a
caller reads its result and its failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.procs import REPO, run_json_module

# What it prints is set by PROBE_* variables: a line before the result, the result on one
# line or indented, no result at all, its exit status.
PROBE = """\
import json, os, sys
if os.environ.get("PROBE_NOISE") == "1":
    print("a line before the result")
result = {"cwd": os.getcwd(), "var": os.environ.get("PROBE_VAR"), "path": "PATH" in os.environ}
if os.environ.get("PROBE_SILENT") != "1":
    print(json.dumps(result, indent=2 if os.environ.get("PROBE_INDENT") == "1" else None))
print("probe: " + "x" * 3000 + " the end of its stderr", file=sys.stderr)
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""
RESULT = {"cwd": str(REPO), "var": "set", "path": True}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "jsonprobe.py").write_text(PROBE)
    return {"PYTHONPATH": str(tmp_path), "PROBE_VAR": "set"}


def test_runs_from_the_repo_with_env_over_this_environment(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the caller's directory is not the child's
    assert run_json_module("jsonprobe", env=env) == RESULT


def test_the_whole_of_stdout_is_the_result_unless_last_line(env: dict[str, str]) -> None:
    assert run_json_module("jsonprobe", env={**env, "PROBE_INDENT": "1"}) == RESULT
    noisy = {**env, "PROBE_NOISE": "1"}
    with pytest.raises(json.JSONDecodeError):
        run_json_module("jsonprobe", env=noisy)
    assert run_json_module("jsonprobe", env=noisy, last_line=True) == RESULT


def test_a_failure_raises_the_end_of_its_stderr(env: dict[str, str]) -> None:
    with pytest.raises(RuntimeError) as info:
        run_json_module("jsonprobe", env={**env, "PROBE_EXIT": "3"})
    message = str(info.value)
    assert message.endswith("x the end of its stderr")
    assert len(message) == 2000


def test_streamed_stderr_goes_to_ours_and_a_failure_names_the_status(
    env: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    assert run_json_module("jsonprobe", env=env, stream_stderr=True) == RESULT
    assert "the end of its stderr" in capfd.readouterr().err
    with pytest.raises(RuntimeError, match=r"^jsonprobe exited with 3$"):
        run_json_module("jsonprobe", env={**env, "PROBE_EXIT": "3"}, stream_stderr=True)


def test_partial_keeps_a_result_printed_before_a_failing_exit(env: dict[str, str]) -> None:
    failing = {**env, "PROBE_EXIT": "1", "PROBE_NOISE": "1"}
    assert run_json_module("jsonprobe", env=failing, last_line=True, partial=True) == RESULT
    with pytest.raises(RuntimeError, match=r"^jsonprobe exited with 0$"):
        run_json_module(
            "jsonprobe", env={**env, "PROBE_SILENT": "1"}, stream_stderr=True, partial=True
        )
