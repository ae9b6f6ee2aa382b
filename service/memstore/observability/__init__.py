"""Metrics (Prometheus), logs and traces (OpenTelemetry): used by the memory and server
layers, importing only the core.
"""
