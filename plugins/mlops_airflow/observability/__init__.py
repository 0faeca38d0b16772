"""Operational signals: statsd metrics declared once, and failure alerts."""
