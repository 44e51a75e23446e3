"""Test setup: pick the backend from KERAS_BACKEND before anything imports keras.

The whole suite runs once per backend (KERAS_BACKEND=tensorflow, then jax), as Keras's CI does.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"

from training.backend import default_backend, select_backend  # noqa: E402  (imports no keras)


def quick_compile_environment(env=os.environ) -> None:
    """Compile settings for the suite and the processes it starts (they inherit the environment).

    The tests fit many tiny models and reload them in fresh processes, so JAX's persistent
    compilation cache, in a temporary folder for this run unless JAX_COMPILATION_CACHE_DIR is set,
    lets a test or a fresh process that compiles a computation seen before load it instead.
    (XLA's --xla_backend_optimization_level=0 was tried too: it compiles faster but the learning
    tests' steps ran slower on both backends, a net loss.) Settings the caller made win."""
    if not env.get("JAX_COMPILATION_CACHE_DIR"):
        import atexit

        cache = tempfile.mkdtemp(prefix="jax-compilation-cache-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        env["JAX_COMPILATION_CACHE_DIR"] = cache
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


quick_compile_environment()  # before keras (and so JAX or TensorFlow) is first imported
BACKEND = select_backend(default_backend())
# `--set` value for the quickest few-step fits: XLA compilation costs TensorFlow seconds per model,
# while JAX without jit dispatches (and compiles) op by op.
FAST_JIT = f"jit_compile={BACKEND == 'jax'}"


def pytest_report_header(config):
    return f"keras backend: {BACKEND}"


@pytest.fixture
def backend():
    return BACKEND


@pytest.fixture(scope="session")
def tiny_fit():
    """`tiny_fit(name)` -> (model.keras path, validation inputs, predictions at the end of fit): one tiny
    fit per task for the whole session, shared by the contract and export tests."""
    from tasks.base import get_task
    from test_task_contract import fit_tiny
    from training import portable

    root = Path(tempfile.mkdtemp(prefix="tiny-fits-"))
    made = {}

    def get(name: str):
        if name not in made:
            result, inputs = fit_tiny(get_task(name), root / name)
            made[name] = (result.run_dir / "model.keras", inputs, portable.flat_predictions(result.model, inputs))
        return made[name]

    yield get
    shutil.rmtree(root, ignore_errors=True)


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real sample data lives in ../shared/data on developer machines and CI)")
    return path


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run cli.main in-process (same backend) from a temporary working directory."""
    import cli as cli_module

    monkeypatch.chdir(tmp_path)

    def run(*argv):
        return cli_module.main([str(a) for a in argv])

    return run


def run_cli_subprocess(*argv, backend=None, timeout=300, cwd=None, env=None):
    """cli.py in a fresh interpreter: for what must happen before keras is imported."""
    import subprocess

    full_env = dict(os.environ, **(env or {}))
    if backend is not None:
        full_env["KERAS_BACKEND"] = backend
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or ROOT, env=full_env)
