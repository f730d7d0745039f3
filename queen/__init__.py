"""Apiary's queen: the API, the dashboard, the ZeroMQ broker, the scheduler and the store."""

__version__ = "0.1.0"
