"""The bottom layer: error types, records, name/size/cursor rules and settings.

Plain Python and pydantic only: no web framework, driver or telemetry library.
"""
