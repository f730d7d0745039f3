"""Apiary's queen: the API, the dashboard, the ZeroMQ broker, the dispatcher and the store."""
