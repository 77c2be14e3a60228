"""Guardrails (the config's ``guardrails:`` list, LiteLLM's schema): checks and masking on requests and
answers at one place.  ``config.py`` (the list), ``registry.py`` (the types), ``texts.py`` (where the text
is, per route), ``run.py`` (one request's checks: phases, masking and restoring, the stream filter,
results), the checkers (``pii.py``, ``content_filter.py``, ``secrets.py``, ``injection.py``,
``output_schema.py``).  The stage is ``lockgate.stages.guardrails``; docs/guardrails.md."""
