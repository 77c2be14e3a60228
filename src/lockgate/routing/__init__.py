"""Routing and reliability: which deployment answers, and what happens when one fails.

``router.Router`` resolves the client's model name (aliases, wildcards,
conditional rules) to a model group, orders fallbacks, and picks a deployment
with the configured strategy among those not cooling down.  ``stats`` keeps
per-deployment health (in flight, latency, failures, cooldowns), shared through
Redis when configured.  ``retry`` classifies failures and computes back-off.
The retry/fallback loop itself is ``forwarding.call``.
"""
