"""Kubernetes operator for MemoryStore resources (kopf). Shares only env-var names with
the service; never imports ``memstore`` internals."""
