"""Signatures of the Standard Webhooks spec, made by its reference library.

Each request carries ``webhook-id`` (the same on every attempt of one event, so a receiver
can drop duplicates), ``webhook-timestamp`` (POSIX seconds of the attempt: receivers refuse
old ones, which stops replays) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`` keyed with the secret's bytes (``whsec_<base64>``). Any Standard
Webhooks library verifies it (``standardwebhooks.Webhook(secret).verify(body, headers)``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook as StandardWebhook


class Signer:
    """Signs request bodies with one webhook's secret."""

    def __init__(self, secret: SecretStr) -> None:
        self._signer = StandardWebhook(secret.get_secret_value())

    def __repr__(self) -> str:
        return "Signer(**********)"

    def headers(self, message_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        at = now or datetime.now(UTC)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": self._signer.sign(message_id, at, body),
        }
