"""Loading the plain helper modules that sit beside the end-to-end tests.

pytest runs with `--import-mode=importlib`, which puts no test directory on `sys.path`, and
some helpers are also scripts run as their own processes (a pjsua2 party): so tests load
them by path. The module is registered in `sys.modules` (dataclasses look their module up
there) and loaded once per name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_module(path: Path, name: str | None = None) -> ModuleType:
    """The module in the file `path`, under `name` (default: e2e_<file stem>)."""
    name = name or f"e2e_{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
