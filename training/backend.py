"""Backend selection: KERAS_BACKEND must be set before keras is first imported."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
import tempfile

from errors import UserError

BACKENDS = ("tensorflow", "jax")


def default_backend() -> str:
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def select_backend(name: str, verbose: bool = False) -> str:
    """Set KERAS_BACKEND, import keras, and fail loudly if keras runs anything else.

    Start-up logs are hidden unless `wants_start_up_logs`; later C++ logging follows
    TF_CPP_MIN_LOG_LEVEL (2, errors only, unless the user set it or `verbose`)."""
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
    hide = not wants_start_up_logs(verbose)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    simulate_cpu_devices_before_import(name)
    with start_up_logs_hidden(hide):
        import keras

        if keras.config.backend() != name:
            raise RuntimeError(f"asked for backend {name!r} but keras runs {keras.config.backend()!r}")
        _probe_devices(name)
    return name


def wants_start_up_logs(verbose: bool) -> bool:
    """--verbose, or TF_CPP_MIN_LOG_LEVEL=0 (the user asked TensorFlow for every log line)."""
    return verbose or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"


@contextlib.contextmanager
def start_up_logs_hidden(hide: bool = True):
    """Hide what TensorFlow, XLA and JAX write to stderr while they load and probe devices.

    Their C++ start-up lines (`WARNING: All log messages before absl::InitializeLog()`, oneDNN and
    CUDA probing) are written to file descriptor 2 before absl logging starts, so neither
    TF_CPP_MIN_LOG_LEVEL nor Python can filter them: fd 2 goes to a temporary file meanwhile. If
    the block raises, what was captured is written out first, so real errors still reach the user.
    """
    if not hide:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
                sys.stderr.flush()


def _probe_devices(name: str) -> None:
    """Query devices now, while start-up logs are hidden: the first query probes CUDA (cuInit
    errors on machines without a GPU, JAX's CUDA-jaxlib warnings)."""
    from pipelines.stream import hide_accelerators_from_tf  # imports TensorFlow (tf.data) on every backend

    hide_accelerators_from_tf()  # before any TensorFlow device is initialised
    if name == "tensorflow":
        _split_tf_cpu(simulated_cpu_devices())
        _grow_tf_gpu_memory()
    if name == "jax":
        import jax

        jax.devices()
    else:
        import tensorflow as tf

        tf.config.list_physical_devices()


SIMULATED_CPU_DEVICES = "KERAS_BASELINES_CPU_DEVICES"  # N: split the host CPU into N devices (tests, compare)


def simulated_cpu_devices() -> int:
    raw = os.environ.get(SIMULATED_CPU_DEVICES, "")
    if not raw:
        return 0
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"{SIMULATED_CPU_DEVICES}={raw}: expected a positive int (CPU devices to simulate)")
    return int(raw)


def simulate_cpu_devices_before_import(name: str) -> None:
    """$KERAS_BASELINES_CPU_DEVICES=N: N CPU devices for distributed runs without accelerators.
    JAX reads XLA_FLAGS when it starts its CPU client, so this must precede importing keras."""
    n = simulated_cpu_devices()
    if n and name == "jax":
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
        os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])


def _split_tf_cpu(n: int) -> None:
    """TensorFlow: N logical CPU devices, configured before its runtime initialises."""
    if n < 2:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def _grow_tf_gpu_memory() -> None:
    """A TensorFlow run takes GPU memory as it needs it instead of all of it up front, so other
    processes on the GPU keep theirs (under JAX, TensorFlow sees no GPU at all: tf.data only)."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # already initialised (a second select_backend in one process)


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
