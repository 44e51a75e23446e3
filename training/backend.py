"""Backend selection: KERAS_BACKEND must be set before keras is first imported."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

from errors import UserError

BACKENDS = ("tensorflow", "jax")


def default_backend() -> str:
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def select_backend(name: str) -> str:
    """Set KERAS_BACKEND, import keras, and fail loudly if keras runs anything else."""
    if name not in BACKENDS:
        raise UserError(f"--backend {name!r}: unknown backend; valid backends: {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        running = sys.modules["keras"].config.backend()
        if running != name:
            raise RuntimeError(
                f"keras was imported with backend {running!r} before --backend {name!r} was applied; "
                "nothing may import keras before cli.py selects the backend"
            )
    os.environ["KERAS_BACKEND"] = name
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.config.backend() != name:
        raise RuntimeError(f"asked for backend {name!r} but keras runs {keras.config.backend()!r}")
    if name != "tensorflow":
        from pipelines.stream import hide_accelerators_from_tf

        hide_accelerators_from_tf()
    return name


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("keras", "tensorflow", "jax", "jaxlib", "tensorflow-datasets", "keras-hub", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def machine_description() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}
    try:
        import keras

        if keras.config.backend() == "jax":
            import jax

            info["devices"] = [str(d) for d in jax.devices()]
        else:
            import tensorflow as tf

            info["devices"] = [d.name for d in tf.config.list_logical_devices()]
    except Exception:  # describing the machine must never break a run
        pass
    return info
