"""Enforcement: virtual keys, model/route/IP policy, rate limits, budgets, cost and spend.

``Governance`` (``enforcement.py``) hangs off the ``Gateway`` as ``gateway.governance``;
``pipeline.py``'s authenticate / authorize / admit / account stages call it.
``policy.py`` (pure policy checks), ``cost.py`` (price table), ``cache.py`` (key cache),
``types.py`` (the contract with storage).
"""

from .enforcement import Governance, Grant, hash_key

__all__ = ["Governance", "Grant", "hash_key"]
