"""pyproject.toml declares compatible ranges (the package installs next to other libraries);
requirements.lock pins the whole environment to exact versions, which make, CI and the image
install. These keep the two consistent: a range edited without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
LOCK_FILE = REPO / "requirements.lock"


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    return [Requirement(line) for group in groups for line in group]


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in LOCK_FILE.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert m, f"not an exact pin in {LOCK_FILE.name}: {raw!r}"
        pins[canonicalize_name(m[1])] = Version(m[2])
    return pins


def test_pyproject_declares_ranges_not_pins() -> None:
    for req in declared():
        operators = {spec.operator for spec in req.specifier}
        assert operators, f"{req} has no version bound"
        assert not operators & {"==", "==="}, f"{req}: exact pins belong in {LOCK_FILE.name}"


def test_every_declared_dependency_is_locked_inside_its_range() -> None:
    pins = locked()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in {LOCK_FILE.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK_FILE.name} pins {req.name}=={pins[name]} outside {req}: run `make lock`"
        )


def test_the_environment_is_the_locked_one() -> None:
    """make installs with the lock as constraints: every locked package is present at its
    locked version (a stale .venv or an install without -c shows here)."""
    wrong = {}
    for name, version in locked().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong[name] = "missing"
            continue
        if installed != version:
            wrong[name] = f"{installed} installed, {version} locked"
    assert not wrong, wrong
