"""The operator's settings (MEMSTORE_OPERATOR_*, validated once at start-up) and its
command line, through the real console scripts (``memstore-operator`` and the
``memstore operator`` hand-over)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from memstore_operator.settings import LIVENESS_DEFAULT, OperatorSettings, SettingsError
from memstore_operator.settings import load_settings as load

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(sysconfig.get_path("scripts"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMSTORE_", "OTEL_"))}
    env.update(extra)
    return env


@pytest.fixture
def no_operator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith(("MEMSTORE_OPERATOR_", "OTEL_")):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_operator_env")
def test_defaults() -> None:
    s = load()
    assert s.namespaces == ()
    assert s.liveness == LIVENESS_DEFAULT
    assert (s.metrics_port, s.metrics_addr) == (8082, "0.0.0.0")
    assert (s.resync_seconds, s.retry_seconds, s.backend_timeout_seconds) == (30, 10, 3)
    assert s.watch_timeout == 300
    assert s.log_level == "INFO"
    assert s.otlp_endpoint is None
    assert s.service_name == "memstore-operator"


@pytest.mark.usefixtures("no_operator_env")
def test_environment_names_and_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTORE_OPERATOR_NAMESPACES", " a, b ,,c ")
    monkeypatch.setenv("MEMSTORE_OPERATOR_METRICS_PORT", "")
    monkeypatch.setenv("MEMSTORE_OPERATOR_LIVENESS", "")
    monkeypatch.setenv("MEMSTORE_OPERATOR_LOG_LEVEL", "debug")
    monkeypatch.setenv("MEMSTORE_OPERATOR_RESYNC_SECONDS", "1.5")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "op-a")
    s = load()
    assert s.namespaces == ("a", "b", "c")
    assert s.metrics_port == 0  # empty: off, as 0
    assert s.liveness == ""
    assert s.log_level == "DEBUG"
    assert s.resync_seconds == 1.5
    assert (s.otlp_endpoint, s.service_name) == ("http://collector:4318", "op-a")
    # Command-line values win over the environment.
    assert load({"namespaces": ("x",), "metrics_port": 9}).namespaces == ("x",)


@pytest.mark.usefixtures("no_operator_env")
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MEMSTORE_OPERATOR_RESYNC_SECONDS", "soon", "valid number"),
        ("MEMSTORE_OPERATOR_RESYNC_SECONDS", "0", "greater than 0"),
        ("MEMSTORE_OPERATOR_RETRY_SECONDS", "-1", "greater than 0"),
        ("MEMSTORE_OPERATOR_BACKEND_TIMEOUT_SECONDS", "x", "valid number"),
        ("MEMSTORE_OPERATOR_WATCH_TIMEOUT", "1.5", "valid integer"),
        ("MEMSTORE_OPERATOR_METRICS_PORT", "70000", "less than or equal to 65535"),
        ("MEMSTORE_OPERATOR_LOG_LEVEL", "loud", "'DEBUG', 'INFO'"),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load()
    assert str(caught.value).startswith(f"invalid operator settings: {name}: ")
    assert message in str(caught.value)


def test_settings_are_frozen() -> None:
    s = OperatorSettings()
    with pytest.raises(ValueError, match="frozen"):
        s.resync_seconds = 1  # type: ignore[misc]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env or clean_env(), capture_output=True, text=True, timeout=60, check=False
    )


def test_operator_script_refuses_a_bad_environment_value() -> None:
    out = run(
        str(SCRIPTS / "memstore-operator"), env=clean_env(MEMSTORE_OPERATOR_WATCH_TIMEOUT="-5")
    )
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "Error: invalid operator settings: MEMSTORE_OPERATOR_WATCH_TIMEOUT: "
        "Input should be greater than 0"
    )
    assert "Traceback" not in out.stderr


def test_memstore_operator_hands_over_options_to_the_operator_script() -> None:
    """``memstore operator`` runs ``memstore-operator`` with the same arguments: its help,
    its option errors (naming the option, not the variable), its exit codes."""
    helped = run(sys.executable, "-m", "memstore", "operator", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("Usage: memstore-operator [OPTIONS]")
    for option in ("--namespace", "--liveness", "--metrics-port", "--log-level"):
        assert option in helped.stdout
    bad = run(sys.executable, "-m", "memstore", "operator", "--metrics-port", "-3")
    assert bad.returncode == 1
    assert "invalid operator settings: --metrics-port: Input should be greater than" in bad.stderr
    unknown = run(sys.executable, "-m", "memstore", "operator", "--namespace", "a", "--nope")
    assert unknown.returncode == 2
    assert "Error: No such option '--nope'" in unknown.stderr
    assert "Usage: memstore-operator" in unknown.stderr


def test_memstore_operator_without_the_operator_installed(tmp_path: Path) -> None:
    """An environment that has the service but no ``memstore-operator`` script gets one
    clear line, not a traceback (a fresh virtualenv that sees this checkout's packages
    through a .pth file, with no scripts of its own and nothing else on PATH)."""
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = sysconfig.get_path("purelib")
    Path(purelib, "memstore-checkout.pth").write_text(f"{REPO / 'service'}\n{ours}\n")
    out = run(str(python), "-m", "memstore", "operator", env=clean_env(PATH=str(tmp_path)))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "Error: the operator is not installed (no memstore-operator command): "
        "pip install 'memstore[operator]'"
    )
