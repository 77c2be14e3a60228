"""The response cache: settings (``settings.py``), request keys and per-request controls (``keys.py``),
storage backends (``backends.py``: one registry, local and Redis), the semantic index (``semantic.py``,
``embedder.py``).  The stage that uses them is ``lockgate.stages.cache``; docs/caching.md."""
