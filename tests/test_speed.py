"""Speed features: the persistent compilation cache, `--backend auto`'s decision, profiling."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from conftest import BACKEND
from errors import UserError
from training import auto_backend, compile_cache

# --- compilation cache ---------------------------------------------------------------------------

def test_compile_cache_setting_resolves_off_default_and_paths(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.USER_JAX_DIR, raising=False)
    monkeypatch.delenv(compile_cache.JAX_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.resolve_root("off") is None
    assert compile_cache.resolve_root("default") == tmp_path / "xdg" / "keras-baselines" / "xla"
    assert compile_cache.resolve_root(str(tmp_path / "mine")) == tmp_path / "mine"
    # A JAX cache folder named by the environment (as the test suite does) becomes the default for both.
    monkeypatch.setenv(compile_cache.JAX_ENV, str(tmp_path / "suite"))
    root = compile_cache.resolve_root("default")
    assert root == tmp_path / "suite"
    assert compile_cache.backend_dir(root, "jax") == tmp_path / "suite"
    assert compile_cache.backend_dir(root, "tensorflow") == tmp_path / "suite" / "tensorflow"


def test_tensorflow_cache_flag_keeps_the_users_other_xla_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_XLA_FLAGS", f"--tf_xla_auto_jit=0 {compile_cache.TF_FLAG}=/old")
    compile_cache.configure(str(tmp_path), "tensorflow")
    assert os.environ["TF_XLA_FLAGS"].split() == ["--tf_xla_auto_jit=0", f"{compile_cache.TF_FLAG}={tmp_path / 'tensorflow'}"]
    assert compile_cache.active_dir("tensorflow") == tmp_path / "tensorflow"
    compile_cache.configure("off", "tensorflow")
    assert os.environ["TF_XLA_FLAGS"] == "--tf_xla_auto_jit=0"
    assert compile_cache.active_dir("tensorflow") is None


def test_cache_watch_tells_cold_from_warm(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_XLA_FLAGS", f"{compile_cache.TF_FLAG}={tmp_path}")
    cold = compile_cache.CacheWatch("tensorflow")
    (tmp_path / "entry.pb").write_text("x")
    assert cold.summary(5.0)["cache"] == "cold"
    warm = compile_cache.CacheWatch("tensorflow")
    assert warm.summary(1.0) == {"cache": "warm", "dir": str(tmp_path), "compile_s": 1.0,
                                 "entries_before": 1, "entries_added": 0}


def test_sieve_drops_only_tensorflows_cache_load_noise(capfd):
    sieve = compile_cache.StderrSieve()
    sieve.start()
    os.write(2, b"E0000 text_format.cc:378] Error parsing text-format tensorflow.XlaSerializedCacheEntry: 2:1\n")
    os.write(2, b"a real warning\n")
    sieve.stop()
    err = capfd.readouterr().err
    assert "a real warning" in err and "XlaSerializedCacheEntry" not in err


COMPILE_ONE_STEP = """
import sys
from training import compile_cache
compile_cache.configure(sys.argv[1], sys.argv[2])  # as fit does: before the backend starts
from training.backend import select_backend
select_backend(sys.argv[2])
import keras, numpy as np
watch = compile_cache.CacheWatch(sys.argv[2])
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
model.compile("sgd", "mse", jit_compile=True)
model.train_on_batch(np.ones((8, 4), "float32"), np.zeros((8, 3), "float32"))
print(watch.summary(None)["cache"])
"""


def test_a_second_process_loads_its_compiled_step_from_the_cache(tmp_path):
    """Two fresh processes compile the same train step: the second loads it (no new entry, no noise)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_XLA_FLAGS", None)
    states = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", COMPILE_ONE_STEP, str(tmp_path), BACKEND], capture_output=True,
                              text=True, timeout=300, cwd=root, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        states.append(proc.stdout.split()[-1])
    assert states == ["cold", "warm"]
    assert any((tmp_path / BACKEND).iterdir())


# --- --backend auto --------------------------------------------------------------------------------

def fake_probe(step_ms: dict, calls: list):
    def probe(backend, task_name, cfg):
        calls.append(backend)
        if step_ms[backend] is None:
            return auto_backend.ProbeResult(backend, error="exit 1: out of memory")
        return auto_backend.ProbeResult(backend, step_s=step_ms[backend] / 1e3, compile_s=2.0, steps=10)
    return probe


CFG = {"model": "cnn", "batch_size": 64, "epochs": 10, "data": "embedded"}


def test_auto_keeps_the_faster_backend_and_says_why(tmp_path):
    calls = []
    record = auto_backend.choose("classification", CFG, tmp_path / "auto.json",
                                 probe=fake_probe({"tensorflow": 40.0, "jax": 80.0}, calls), say=lambda s: None)
    assert record["backend"] == "tensorflow" and not record["cached"]
    assert "2.00x faster" in record["reason"] and "jax 80.0 ms/step" in record["reason"]
    assert record["probe"]["jax"]["step_s"] == pytest.approx(0.08)
    assert sorted(calls) == ["jax", "tensorflow"]


def test_auto_decision_is_cached_per_shape_of_the_step_not_per_epoch_count(tmp_path):
    calls = []
    probe = fake_probe({"tensorflow": 90.0, "jax": 30.0}, calls)
    first = auto_backend.choose("classification", CFG, tmp_path / "auto.json", probe=probe, say=lambda s: None)
    again = auto_backend.choose("classification", {**CFG, "epochs": 3, "seed": 7}, tmp_path / "auto.json",
                                probe=probe, say=lambda s: None)
    assert first["backend"] == again["backend"] == "jax" and again["cached"] and len(calls) == 2
    auto_backend.choose("classification", {**CFG, "batch_size": 128}, tmp_path / "auto.json", probe=probe,
                        say=lambda s: None)
    assert len(calls) == 4  # another batch size is another step: probed again


def test_auto_never_picks_a_backend_whose_probe_failed(tmp_path):
    record = auto_backend.choose("classification", CFG, tmp_path / "a.json",
                                 probe=fake_probe({"tensorflow": None, "jax": 500.0}, []), say=lambda s: None)
    assert record["backend"] == "jax" and "tensorflow failed: exit 1: out of memory" in record["reason"]
    with pytest.raises(UserError, match="--backend auto: no backend could run a probe step"):
        auto_backend.choose("classification", CFG, tmp_path / "b.json",
                            probe=fake_probe({"tensorflow": None, "jax": None}, []), say=lambda s: None)


@pytest.mark.parametrize("command", ["evaluate", "fit"])
def test_auto_is_refused_where_the_backend_is_not_chosen_by_a_probe(command):
    import cli

    args = argparse.Namespace(command=command, backend="auto", resume="somewhere" if command == "fit" else None,
                              run_dir=None)
    expected = "a resumed run keeps the backend" if command == "fit" else "only fit chooses its backend"
    with pytest.raises(UserError, match=expected):
        cli._run_backend(args)


# --- profiling ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    """One tiny classification fit that traces train steps 2..3."""
    from conftest import FAST_JIT
    from tasks.base import get_task, resolve_config
    from training.loop import fit

    task = get_task("classification")
    cfg = resolve_config(task, "debug", {}, ["num_train=128", "num_val=32", "num_test=0", "profile_steps=2,3", FAST_JIT])
    return fit(task, cfg, tmp_path_factory.mktemp("profiled") / "run", verbose=0)


def test_profile_steps_write_a_trace_into_the_run(profiled_run):
    traces = profiled_run.metrics["profile"]
    assert traces and all(t.startswith("train/plugins/profile/") and t.endswith(".xplane.pb") for t in traces)
    assert all((profiled_run.run_dir / t).stat().st_size > 1000 for t in traces)


def test_tensorboards_profile_plugin_lists_the_traced_run(profiled_run):
    pytest.importorskip("xprof", reason="the XProf plugin is an extra: pip install -e '.[profile]'")
    import gzip
    import urllib.request

    from tensorboard import program

    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", str(profiled_run.run_dir.parent), "--host", "127.0.0.1", "--port", "0"])
    url = tb.launch()
    with urllib.request.urlopen(url.rstrip("/") + "/data/plugin/profile/runs", timeout=60) as response:
        body = response.read()
    runs = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
    assert any(profiled_run.run_dir.name in run for run in runs), runs
