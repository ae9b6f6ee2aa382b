"""With no route to any host, the default embedder works and opens no socket.

Each probe runs in a fresh process inside a new network namespace (``unshare --net``,
with ``--map-root-user`` so it needs no privilege beyond user namespaces): only a loopback
interface, which is down, so every connection and every DNS look-up fails. An audit hook
in the probe records every name look-up and every connect or send on a network socket
(Python's audit events ``socket.getaddrinfo``, ``socket.connect``, ...), so a download
attempt is seen even if a library swallowed the error. The control probe shows the namespace and the hook catch a hub download: wordllama's
own default loader, which always fetches the tokenizer from the Hugging Face hub.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Records what reaches for another host: name look-ups, and connecting or sending on a
# socket other than AF_UNIX (asyncio's loop wakes itself through a socketpair; urllib3, which
# wordllama imports, binds ::1 once at import to learn whether IPv6 exists: both local).
PROBE_PREFIX = """
import json, socket, sys
socket_events = []
OUTBOUND = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
            "socket.gethostbyaddr", "socket.connect", "socket.sendto", "socket.sendmsg"}

def hook(event, args):
    if event not in OUTBOUND:
        return
    if event.startswith("socket.send") or event == "socket.connect":
        if getattr(args[0], "family", None) == socket.AF_UNIX:
            return
    socket_events.append(event)

sys.addaudithook(hook)
"""

OUR_EMBEDDER = (
    PROBE_PREFIX
    + """
import asyncio
import numpy as np
from memstore.core.settings import SearchSettings
from memstore.embeddings.base import build_embedder

async def main():
    embedder = build_embedder(SearchSettings())
    rows = await embedder.embed(["offline memory", "no network here", "recall"])
    await embedder.close()
    return embedder.name, rows

name, rows = asyncio.run(main())
print(json.dumps({"name": name, "shape": list(rows.shape),
                  "norms": np.linalg.norm(rows, axis=1).tolist(),
                  "socket_events": sorted(set(socket_events))}))
"""
)

LIBRARY_DEFAULT_LOADER = (
    PROBE_PREFIX
    + """
from wordllama import WordLlama
try:
    WordLlama.load(cache_dir=sys.argv[1])
    error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"error": error, "socket_events": sorted(set(socket_events))}))
"""
)


def run_without_network(code: str, *args: str, tmp_path: Path) -> dict[str, object]:
    done = subprocess.run(
        ["unshare", "--map-root-user", "--net", sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        # A fresh, empty home: no model cache of the machine's user can help.
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_namespace_has_no_route(tmp_path: Path) -> None:
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 443), timeout=5)\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    done = subprocess.run(
        ["unshare", "--map-root-user", "--net", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "101"  # ENETUNREACH


def test_default_embedder_works_offline_and_opens_no_socket(tmp_path: Path) -> None:
    result = run_without_network(OUR_EMBEDDER, tmp_path=tmp_path)
    assert result["name"] == "wordllama/l2_supercat/256"
    assert result["shape"] == [3, 256]
    assert result["norms"] == pytest.approx([1.0, 1.0, 1.0], rel=1e-5)
    assert result["socket_events"] == []
    assert not (tmp_path / ".cache").exists()


def test_the_probe_catches_a_hub_download(tmp_path: Path) -> None:
    result = run_without_network(LIBRARY_DEFAULT_LOADER, str(tmp_path / "cache"), tmp_path=tmp_path)
    assert result["error"] is not None
    assert "huggingface.co" in str(result["error"])
    assert "socket.getaddrinfo" in result["socket_events"]  # type: ignore[operator]
