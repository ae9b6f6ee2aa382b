"""HTTP API (aiohttp). Knows the manager, never a backend's details."""
