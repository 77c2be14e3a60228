"""User plugins in the style of LiteLLM's custom callbacks (docs/plugins.md).

A plugin file names an instance of a ``CustomLogger`` subclass; the config lists it
as ``litellm_settings.callbacks: [module.instance]``.  ``Plugins`` (runner.py) loads
them at start-up and registers them into ``gateway.hooks``; without callbacks
nothing of this package is imported.
"""

from .api import CustomLogger, DualCache, RejectRequest, UserAPIKeyAuth
from .runner import Plugins

__all__ = ["CustomLogger", "DualCache", "Plugins", "RejectRequest", "UserAPIKeyAuth"]
