"""Resolve a LiteLLM callback path (``module.instance``) to the object it names.

As LiteLLM does, ``custom_callbacks.proxy_handler_instance`` is first looked up as
the file ``custom_callbacks.py`` in the config file's folder (``pkg.mod.obj``:
``pkg/mod.py``), then as a module on the Python path.  The folder is put on
``sys.path`` so that a plugin file can import its own helper modules.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ..config import ConfigError


def load(path: str, config_dir: Path | None) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"callback {path!r}: expected module.instance (for example custom_callbacks.handler)")
    module = _module(module_name, config_dir, path)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"callback {path!r}: module {module_name!r} has no attribute {attr!r}") from None


def _module(name: str, config_dir: Path | None, path: str) -> ModuleType:
    if config_dir is not None:
        folder = str(config_dir.resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
        file = config_dir.joinpath(*name.split(".")).with_suffix(".py")
        if file.is_file():
            return _from_file(name, file, path)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        where = f" (looked for {config_dir / (name.replace('.', '/') + '.py')} first)" if config_dir else ""
        raise ConfigError(f"callback {path!r}: cannot import {name!r}{where}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"callback {path!r}: importing {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _from_file(name: str, file: Path, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"callback {path!r}: cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses, pickling and the plugin's own imports need it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("litellm"):
            hint = " (a LiteLLM plugin: import CustomLogger, UserAPIKeyAuth and DualCache from lockgate.plugins)"
        raise ConfigError(f"callback {path!r}: {file} failed to load: {type(exc).__name__}: {exc}{hint}") from exc
    return module
