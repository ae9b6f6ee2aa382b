"""What `pip install memstore` puts next to an agent's other libraries.

* The wheel's metadata declares compatible ranges, never exact pins (those live in
  requirements.lock, for make, CI and the image): built here with pip, as a user would.
* ``MemoryClient`` imports only what talking HTTP needs: none of the server's, the
  manager's or the backends' modules and libraries (checked in a fresh interpreter).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]

SERVER_ONLY = [
    "memstore.memory.manager",
    "memstore.backends",
    "memstore.server",
    "memstore.observability",
    "memstore.core.settings",
    "sqlite3",
    "prometheus_client",
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "pydantic_settings",
    "click",
    "redis",
    "pymongo",
    "kopf",
    "kubernetes",
]


def wheel_requirements(tmp_path: Path) -> list[Requirement]:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("memstore-*.whl")
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(z.read(name).decode())
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


def test_wheel_declares_ranges_not_pins(tmp_path: Path) -> None:
    requirements = wheel_requirements(tmp_path)
    assert any(r.name == "aiohttp" for r in requirements)
    for req in requirements:
        operators = {spec.operator for spec in req.specifier}
        assert operators, f"{req}: no version bound"
        assert not operators & {"==", "==="}, f"{req}: exact pin in the wheel's metadata"
        if req.marker is None:  # what every install gets: bounded above too
            assert "<" in operators, f"{req}: no upper bound"


def test_the_client_imports_no_server_module() -> None:
    probe = (
        "import json, sys\n"
        "from memstore.client import MemoryClient\n"
        "from memstore import MemoryClient as Again, NotFoundError\n"
        f"heavy = {SERVER_ONLY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == []
