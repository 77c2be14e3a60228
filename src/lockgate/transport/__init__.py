"""Upstream HTTP: the pooled client, SSE framing and timeouts."""
