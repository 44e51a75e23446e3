"""Persistent XLA compilation cache for both backends, so a second run of the same model and shapes
loads its compiled programs instead of compiling them again.

`--set compile_cache=default|off|PATH`. The default folder is `$XDG_CACHE_HOME/keras-baselines/xla`
(else `~/.cache/keras-baselines/xla`); an environment that already names JAX's cache folder
(`JAX_COMPILATION_CACHE_DIR`, as the test suite does) makes that folder the default for both
backends, so test runs never write into the user's cache. Inside the folder JAX writes to `jax/`
and TensorFlow's XLA (`--tf_xla_persistent_cache_directory`) to `tensorflow/`.

Both libraries read these settings when they first compile, so `configure` runs before the
backend compiles anything (cli.py's fit sets it before selecting the backend). Imports no keras.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

OFF = "off"
DEFAULT = "default"
TF_FLAG = "--tf_xla_persistent_cache_directory"
JAX_ENV = "JAX_COMPILATION_CACHE_DIR"


USER_JAX_DIR = "KERAS_BASELINES_USER_JAX_CACHE"  # JAX_COMPILATION_CACHE_DIR as it was before configure() changed it


def _user_jax_dir() -> str:
    """The JAX cache folder the user's environment named ('' if none), not the one configure() set."""
    return os.environ.get(USER_JAX_DIR, os.environ.get(JAX_ENV, ""))


def default_root() -> Path:
    """Where compiled programs go unless the user says otherwise."""
    if _user_jax_dir():
        return Path(_user_jax_dir())
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "keras-baselines" / "xla"


def resolve_root(setting: str) -> Path | None:
    """`off` -> None; `default` (or empty) -> default_root(); anything else is a folder path."""
    setting = (setting or DEFAULT).strip()
    if setting.lower() == OFF:
        return None
    return default_root() if setting == DEFAULT else Path(setting).expanduser()


def backend_dir(root: Path, backend: str) -> Path:
    """`root/<backend>`; JAX keeps a folder the environment named (the test suite shares it with its tests)."""
    if backend == "jax" and _user_jax_dir() and root == Path(_user_jax_dir()):
        return root
    return root / backend


def configure(setting: str, backend: str) -> Path | None:
    """Point `backend`'s XLA cache at the resolved folder (or turn it off); returns the folder used.

    Must run before the backend's first compilation; it works whether or not keras is imported."""
    os.environ.setdefault(USER_JAX_DIR, os.environ.get(JAX_ENV, ""))
    root = resolve_root(setting)
    if backend == "jax":
        return _configure_jax(None if root is None else backend_dir(root, "jax"))
    return _configure_tensorflow(None if root is None else backend_dir(root, "tensorflow"))


def _configure_jax(folder: Path | None) -> Path | None:
    if folder is None:
        os.environ.pop(JAX_ENV, None)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[JAX_ENV] = str(folder)
        # Small programs (eval steps, metric updates) are cached too: each costs a process start.
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    if "jax" in sys.modules:  # jax read its environment at import: tell its config directly
        import jax

        jax.config.update("jax_compilation_cache_dir", None if folder is None else str(folder))
        if folder is not None:
            jax.config.update("jax_persistent_cache_min_compile_time_secs",
                              float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
            jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                              int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))
    return folder


def _configure_tensorflow(folder: Path | None) -> Path | None:
    """TF_XLA_FLAGS is parsed when TensorFlow first needs an XLA flag (its first compilation)."""
    flags = [f for f in os.environ.get("TF_XLA_FLAGS", "").split() if not f.startswith(TF_FLAG + "=")]
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        flags.append(f"{TF_FLAG}={folder}")
    if flags:
        os.environ["TF_XLA_FLAGS"] = " ".join(flags)
    else:
        os.environ.pop("TF_XLA_FLAGS", None)
    return folder


def active_dir(backend: str) -> Path | None:
    """The cache folder this process compiles into (from the settings `configure` made)."""
    if backend == "jax":
        if "jax" in sys.modules:
            import jax

            value = jax.config.jax_compilation_cache_dir
            return Path(value) if value else None
        return Path(os.environ[JAX_ENV]) if os.environ.get(JAX_ENV) else None
    for flag in os.environ.get("TF_XLA_FLAGS", "").split():
        if flag.startswith(TF_FLAG + "="):
            return Path(flag.split("=", 1)[1])
    return None


def _entries(folder: Path | None) -> set[str]:
    if folder is None or not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.is_file()}


class CacheWatch:
    """Compares the cache's entries before and after a fit: no new entry means every compiled
    program came from the cache (warm); a new one means something was compiled here (cold)."""

    def __init__(self, backend: str):
        self.backend = backend
        self.folder = active_dir(backend)
        self.before = _entries(self.folder)

    def summary(self, compile_s: float | None) -> dict:
        """metrics.json's `compile`: the first step's time (trace + compile, or cache load) and the cache state."""
        if self.folder is None:
            return {"cache": OFF, "dir": None, "compile_s": compile_s}
        added = len(_entries(self.folder) - self.before)
        state = "cold" if added else ("warm" if self.before else "unused")
        return {"cache": state, "dir": str(self.folder), "compile_s": compile_s,
                "entries_before": len(self.before), "entries_added": added}


def configure_all(setting: str) -> dict:
    """Configure both backends' caches (the backend is chosen after this runs; settings are env vars)."""
    return {backend: configure(setting, backend) for backend in ("tensorflow", "jax")}


# TensorFlow reads a cache entry with ReadTextOrBinaryProto: the text-format attempt logs one
# "Error parsing text-format tensorflow.XlaSerializedCacheEntry" line per entry before the binary read succeeds.
TF_LOAD_NOISE = "XlaSerializedCacheEntry"


class StderrSieve:
    """File descriptor 2 goes to a temporary file between `start` and `stop`; `stop` writes back every
    line except TensorFlow's harmless cache-load noise (C++ writes to fd 2 directly, so Python cannot filter it)."""

    def __init__(self, noise: str = TF_LOAD_NOISE):
        self.noise = noise
        self._saved = None
        self._file = None

    def start(self) -> None:
        import tempfile

        if self._saved is not None:
            return
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)

    def stop(self) -> None:
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        self._file.seek(0)
        kept = [line for line in self._file.read().decode(errors="replace").splitlines(keepends=True)
                if self.noise not in line]
        self._file.close()
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def quiet_cache_loads(backend: str):
    """A StderrSieve for the first epoch of a TensorFlow fit that loads from the cache (where the
    train, validation and predict programs are first loaded), or None: on JAX, with the cache off, or
    when the user asked for every log line (--verbose / TF_CPP_MIN_LOG_LEVEL=0)."""
    if backend != "tensorflow" or active_dir(backend) is None or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return None
    return StderrSieve()
