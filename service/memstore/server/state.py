"""Typed keys for what the application holds (one owner each, set in ``app.create_app``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.observability.metrics import PrometheusMetrics
from memstore.server.webhooks.config import WebhookStore

SETTINGS = web.AppKey("settings", Settings)
MANAGER = web.AppKey("manager", DistributedMemoryManager)
METRICS = web.AppKey("metrics", PrometheusMetrics)
OPENAPI = web.AppKey("openapi", dict[str, Any])
WEBHOOKS = web.AppKey("webhooks", WebhookStore)
#: This process's number under ``memstore serve --workers N`` (absent with one worker).
WORKER = web.AppKey("worker", int)
