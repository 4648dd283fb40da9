"""Fixtures every test module can use without importing them."""

pytest_plugins = ["tests.cluster_fixtures"]
