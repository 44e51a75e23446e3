"""Deferred imports for task modules.

Task modules are imported to answer `--help`, `tasks` and every config error, which must not wait
seconds for keras / TensorFlow / JAX nor import keras before the backend is chosen. A task module
therefore binds keras, keras_models.* and TensorFlow-using pipelines modules with `lazy_module`:
the real import happens at the first attribute access, i.e. when a hook runs.

(`importlib.util.LazyLoader` would import parent packages at once, e.g. `keras` for `keras.ops`
and `keras_models/__init__.py` for `keras_models.text`; this stand-in defers those too.)
"""

from __future__ import annotations

import importlib
import types


class _LazyModule(types.ModuleType):
    def __getattr__(self, attr):  # only called for names the stand-in itself lacks
        return getattr(importlib.import_module(self.__name__), attr)


def lazy_module(name: str) -> types.ModuleType:
    """A stand-in for `import name` that imports `name` on first attribute access."""
    return _LazyModule(name)
