"""Webhooks: change events delivered to receivers outside, signed (Standard Webhooks)."""
