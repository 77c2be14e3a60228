"""Metrics (Prometheus) and the access log."""
