"""Storage backends behind one contract (``base.DistributedMemoryBackend``).

Backends never import each other, aiohttp, or the manager. The factory imports each
backend's module (and so its driver) only when it is asked for.
"""
