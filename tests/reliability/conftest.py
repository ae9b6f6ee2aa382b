"""Figures from the fault tests (writes acknowledged, lost, errors, time to recover),
printed at the end of the run and written to ``$MEMSTORE_FIGURES_FILE`` when set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

FIGURES: list[dict[str, Any]] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Any:
    def record(**values: Any) -> None:
        FIGURES.append({"test": request.node.name, **values})

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for row in FIGURES:
        terminalreporter.write_line(orjson.dumps(row).decode())
    target = os.environ.get("MEMSTORE_FIGURES_FILE")
    if target:
        Path(target).write_bytes(orjson.dumps(FIGURES, option=orjson.OPT_INDENT_2))
