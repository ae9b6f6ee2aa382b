"""The node tests use the chart tests' helm binary fixture (tests/helm/conftest.py)."""

from tests.helm.conftest import helm

__all__ = ["helm"]
