"""The memory layer: ``DistributedMemoryManager`` (validation, cache, metrics and tracing
around a backend) and its local read cache.
"""
