"""Fixtures for the chart tests: the helm binary (built by mk/helm.mk) and rendering."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.chartgen import CHART

HELM_VERSION = "v3.22.0"

Manifest = dict[str, Any]

# Every toggle of the chart on (plus the options that change what is rendered).
ALL_TOGGLES = (
    "serviceMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "networkPolicy.enabled=true",
    "podDisruptionBudget.enabled=true",
    "grafanaDashboard.enabled=true",
    "grafanaDashboard.folder=memstore",
    "memoryStore.credentials.redisPassword=pw-1",
    "memoryStore.spec.backend.type=redis",
    "memoryStore.spec.backend.redis.host=redis.db",
    "operator.extraEnv[0].name=EXTRA",
    "operator.extraEnv[0].value=on",
    "imagePullSecrets[0]=regcred",
)


def helm_path() -> Path:
    explicit = os.environ.get("HELM_BIN")
    if explicit:
        return Path(explicit)
    tools = os.environ.get("TOOLS_DIR") or str(Path.home() / ".cache" / "memstore-tools")
    return Path(tools) / f"helm-{HELM_VERSION}" / "helm"


@dataclass
class Helm:
    """The helm binary, with its cache/config/data dirs in a temporary directory (the
    tests never touch the user's helm setup) and, optionally, a kubeconfig."""

    bin: Path
    home: Path
    kubeconfig: Path | None = None

    def with_kubeconfig(self, kubeconfig: Path) -> Helm:
        return Helm(self.bin, self.home, kubeconfig)

    def run(
        self, *args: str, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        out = subprocess.run(
            [str(self.bin), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=240,
            check=False,
        )
        if check and out.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({out.returncode}):\n{out.stderr}{out.stdout}"
            )
        return out


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    path = helm_path()
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (mk/helm.mk builds helm)")
    return Helm(path, tmp_path_factory.mktemp("helm-home"))


Renderer = Callable[..., list[Manifest]]


@pytest.fixture(scope="session")
def render(helm: Helm) -> Renderer:
    """``render(*sets, namespace=..., release=...)``: the manifests ``helm template``
    produces (hooks included), as dicts."""

    def _render(
        *sets: str, namespace: str = "memstore", release: str = "rel", extra: Sequence[str] = ()
    ) -> list[Manifest]:
        args = ["template", release, str(CHART), "--namespace", namespace]
        for s in sets:
            args += ["--set", s]
        out = helm.run(*args, *extra)
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    return _render


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def pod_specs(manifests: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(object name, pod spec) of every workload and bare pod in the manifests."""
    out: list[tuple[str, Manifest]] = []
    for m in manifests:
        if m["kind"] == "Pod":
            out.append((m["metadata"]["name"], m["spec"]))
        elif m["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((m["metadata"]["name"], m["spec"]["template"]["spec"]))
    return out
