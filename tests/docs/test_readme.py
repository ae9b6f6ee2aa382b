"""Every command and snippet of README.md, run as a new user would run it.

``python`` blocks are complete programs: each runs as a file in a fresh directory and must
exit by itself with status 0 (``# expected`` comments after a ``print`` are checked
against its output). ``json`` blocks are MCP client configurations (``mcpServers``): each
server in them is reached as a client would, with the official MCP client (a command is
started in a fresh directory and spoken to over stdio, a ``url`` over Streamable HTTP),
and must list the memory tools and answer the ``summary`` tool. ``sh`` blocks run command
by command in bash, in document order, against one real ``memstore serve`` started here,
with ``.venv/bin`` first on ``PATH`` and ``MEMSTORE_URL`` set: the commands run as
written, except that the port the README shows (8080) becomes the test service's port (in
``json`` blocks too). The commands that cannot run here are in ``NOT_RUN_HERE`` with where
they are covered; each entry must match a README command.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from tests.support.procs import ServiceProcess, running_service

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

#: Command prefix -> why the test does not run it, and what covers it instead.
NOT_RUN_HERE = {
    "make run": "serves until stopped: the `memstore serve` it runs is the service this "
    "test starts and runs the other commands against",
    "make test": "is what runs this test (CI's command)",
    "MEMORY_TYPE=redis REDIS_HOST=localhost memstore serve --workers": "serves until "
    "stopped, on a Redis: tests/process/test_workers.py runs `memstore serve --workers 2` on "
    "a real Redis",
    "helm install": "needs a Kubernetes cluster: tests/helm installs the chart on a real "
    "kube-apiserver",
    "kubectl ": "needs a Kubernetes cluster (tests/helm, tests/operator)",
    "make kind-": "needs Docker; the README says kind is not exercised by CI",
    "make image": "pulls python:3.11-slim-bookworm from Docker Hub; `make test` builds the "
    "same Dockerfile on a local base (make test-image) and tests/node runs the image",
    "docker ": "needs Docker; tests/helm/test_image.py starts the image's command with the "
    "same settings",
    "kind ": "needs Docker and kind (not on our machines)",
    "helm test": "needs a cluster whose kubelet runs the test pod; tests/node runs "
    "`helm test --logs` on a real node",
}

_README_PORT = re.compile(r"(localhost|127\.0\.0\.1):8080\b")


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    code: str


def markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def blocks() -> list[Block]:
    tokens = markdown().parse(README.read_text())
    out = []
    for t in tokens:
        if t.type == "fence" and t.map is not None:
            lang = t.info.strip().split(" ")[0]
            where = f"README line {t.map[0] + 1}"
            assert lang in ("python", "sh", "json"), f"{where}: unknown block {lang!r}"
            out.append(Block(lang, t.map[0] + 1, t.content))
    return out


def commands(code: str) -> list[str]:
    """The block's commands: continuation lines joined, blank lines dropped."""
    out: list[str] = []
    pending = ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command:
            out.append(command)
    return out


def skipped(command: str) -> str | None:
    for prefix, reason in NOT_RUN_HERE.items():
        if command.startswith(prefix):
            return reason
    return None


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new user: none of the suite's memstore settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEMSTORE_", "MEMORY_", "REDIS_", "MONGODB_", "OTEL_"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with running_service(tmp_path_factory.mktemp("readme-service")) as svc:
        yield svc


def local(command: str, svc: ServiceProcess) -> str:
    return _README_PORT.sub(f"127.0.0.1:{svc.port}", command)


BLOCKS = blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.lang}-line-{b.line}" for b in BLOCKS])
def test_readme_block_runs(block: Block, service: ServiceProcess, tmp_path: Path) -> None:
    env = clean_env(MEMSTORE_URL=service.url)
    if block.lang == "json":
        servers = json.loads(local(block.code, service))["mcpServers"]
        assert servers, "an MCP configuration without servers"
        for name, entry in servers.items():
            asyncio.run(check_mcp_server(name, entry, env, tmp_path / name))
        return
    if block.lang == "python":
        script = tmp_path / f"readme_line_{block.line}.py"
        script.write_text(local(block.code, service))
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,  # a snippet that does not exit by itself fails here
        )
        assert result.returncode == 0, result.stderr
        for line in block.code.splitlines():
            m = re.match(r"\s*print\(.*\)\s*#\s*(.+)$", line)
            if m:
                assert m[1] in result.stdout.splitlines(), (m[1], result.stdout)
        return
    for command in commands(block.code):
        if skipped(command):
            continue
        result = subprocess.run(
            ["bash", "-c", local(command, service)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, command
        # curl exits 0 on an HTTP error: its answer must not be the service's error body.
        assert not is_error_body(result.stdout), f"{command}\n{result.stdout}"


async def check_mcp_server(
    name: str, entry: dict[str, Any], env: dict[str, str], cwd: Path
) -> None:
    """Reach one ``mcpServers`` entry as an MCP client would; it must serve the tools."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    server: str | StdioServerParameters
    if "url" in entry:
        server = entry["url"]
    else:
        cwd.mkdir()
        command = shutil.which(entry["command"], path=env["PATH"])
        assert command is not None, f"{name}: {entry['command']} is not on PATH"
        server = StdioServerParameters(
            command=command,
            args=entry.get("args", []),
            env={**env, **entry.get("env", {})},
            cwd=cwd,
        )
    async with Client(server) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"remember", "recall", "summary"} <= tools, (name, tools)
        result = await client.call_tool("summary", {})
        assert not result.is_error, (name, result.content)


def is_error_body(text: str) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and {"code", "message"} <= body.keys()


def test_every_command_not_run_here_is_in_the_readme() -> None:
    """The list of exceptions stays short and honest: each entry matches a command."""
    readme_commands = [c for b in BLOCKS if b.lang == "sh" for c in commands(b.code)]
    for prefix in NOT_RUN_HERE:
        assert any(c.startswith(prefix) for c in readme_commands), prefix


def test_readme_has_runnable_blocks_of_both_kinds() -> None:
    kinds = {b.lang for b in BLOCKS}
    assert kinds == {"python", "sh", "json"}
    assert any(not skipped(c) for b in BLOCKS if b.lang == "sh" for c in commands(b.code))


def test_every_table_row_is_in_a_table() -> None:
    """A row cut off from its table (a blank line inside it) renders as a paragraph."""
    text = README.read_text()
    in_tables: set[int] = set()
    for t in markdown().parse(text):
        if t.type == "table_open" and t.map is not None:
            in_tables.update(range(t.map[0], t.map[1]))
    in_fences: set[int] = set()
    for t in markdown().parse(text):
        if t.type == "fence" and t.map is not None:
            in_fences.update(range(t.map[0], t.map[1]))
    stray = [
        i + 1
        for i, line in enumerate(text.splitlines())
        if line.startswith("|") and i not in in_tables and i not in in_fences
    ]
    assert not stray, f"README lines outside any table: {stray}"
