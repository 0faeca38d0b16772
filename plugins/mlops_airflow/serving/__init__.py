"""Serving backends: where the champion answers requests, in two colours (blue-green)."""
