"""Lazy package exports (PEP 562): a package's public names load on first use.

    _EXPORTS = {"sweep": "estimators.sweep.driver", ...}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

So ``import estimators.summary`` or ``import estimators.sweep.store`` does not pay for loading
TensorFlow through a package ``__init__`` (Python runs it before any submodule). Standard
library only.
"""

import importlib
import sys


def lazy_exports(package, exports):
    """(__getattr__, __dir__) for ``package`` (its ``__name__``): ``exports`` maps each public
    name to the module that defines it; a name is imported on first access, then cached."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
