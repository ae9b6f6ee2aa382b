"""``memstore mcp``: the MCP server over stdin/stdout, for desktop clients (Claude Desktop
and any client that starts a local command).

The memory is either this process's own (a manager on the configured backend, by default
the embedded store) or a ``MemoryClient`` proxying to a running service: the tools are the
same (``tools.py`` is written over ``MemoryAPI``). The local user runs the command, so over
stdio the caller is ``ANONYMOUS`` (the owner of the store); through a proxy, the service
applies the token's namespaces and roles to every call.
"""

from __future__ import annotations

from collections.abc import Callable

from mcp.server.stdio import stdio_server

from memstore.memory.api import MemoryAPI
from memstore.memory.manager import ChangeListener
from memstore.server.auth import ANONYMOUS
from memstore.server.mcp.resources import ChangeFeed
from memstore.server.mcp.server import MemoryMcp

#: A memory's change hook (``DistributedMemoryManager.add_change_listener``).
ChangeSource = Callable[[ChangeListener], Callable[[], None]]


async def serve_stdio(memory: MemoryAPI, changes: ChangeSource | None) -> None:
    """Serve until stdin closes. ``changes``: the memory's change hook; without one (a
    client) the tools announce their own writes to listen streams."""
    feed = ChangeFeed()
    memory_mcp = MemoryMcp(
        memory,
        principal_of=lambda ctx: ANONYMOUS,
        feed=feed,
        announce_writes=changes is None,
        session_subscriptions=True,
    )
    server = memory_mcp.server()
    async with memory:
        remove = changes(feed.changed) if changes is not None else None
        try:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())
        finally:
            if remove is not None:
                remove()
