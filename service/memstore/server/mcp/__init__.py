"""memstore as an MCP server (the official MCP Python SDK's low-level ``Server``).

* ``tools.py``: the tools, written once over ``MemoryAPI`` (the manager in process, or a
  ``MemoryClient`` proxying to a service);
* ``resources.py``: entity and conversation resources, and the change feed that tells open
  ``subscriptions/listen`` streams about writes (the manager's change hook);
* ``server.py``: the SDK ``Server`` built from both, with the namespace and role policy;
* ``http.py``: ``/mcp`` in the aiohttp app (the SDK's Streamable HTTP transport, stateless).

Importing this package needs the ``mcp`` extra; ``server.app`` imports it only when it is
installed.
"""
