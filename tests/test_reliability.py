"""Reliability: NaN guard, kill -9 + resume, SIGTERM, atomic checkpoints, clear errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import BACKEND, ROOT
from training import rundir

# 32 steps per epoch, 3 epochs: long enough to be killed mid-epoch.
RUN = ["--task", "classification", "--preset", "debug", "--epochs", "3", "--quiet",
       "--set", "num_train=1024", "--set", "num_val=128", "--set", "width=12", "--set", "log_every_steps=4"]


def _latest(run_dir):
    try:
        return json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _start(run_dir, *extra):
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "fit", *RUN, "--run-dir", str(run_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _wait_for(proc, predicate, timeout=180):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def test_kill_9_mid_epoch_then_resume_completes_like_an_uninterrupted_run(cli, tmp_path):
    killed = tmp_path / "killed"
    proc = _start(killed, "--set", "checkpoint_every_steps=5")
    mid_epoch = lambda: (s := _latest(killed)) is not None and s["global_step"] >= 40 and s["step_in_epoch"] > 0
    assert _wait_for(proc, mid_epoch), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = _latest(killed)
    assert 0 < state["step_in_epoch"] < 32 and state["epoch"] == 1
    assert not (killed / "metrics.json").exists()

    assert cli("fit", "--resume", killed) == 0
    resumed = json.loads((killed / "metrics.json").read_text())
    assert resumed["epochs_completed"] == 3 and resumed["global_step"] == 3 * 32
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["resumed_from_step"] == state["global_step"]

    assert cli("fit", *RUN, "--run-dir", tmp_path / "straight", "--set", "checkpoint_every_steps=5") == 0
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    # Same weights, optimizer state and batches from the checkpoint on: equal up to float noise.
    assert resumed["validation"]["loss"] == pytest.approx(straight["validation"]["loss"], rel=0.05, abs=0.02)
    assert resumed["validation"]["accuracy"] == pytest.approx(straight["validation"]["accuracy"], abs=0.05)

    # TensorBoard step curves continue past the checkpoint instead of restarting at 0.
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(killed / "train"), size_guidance={"tensors": 0})
    acc.Reload()
    steps = sorted({e.step for e in acc.Tensors("step/loss")})
    assert steps[-1] == 96 and min(s for s in steps if s > state["global_step"]) <= state["global_step"] + 4


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    proc = _start(run)
    started = lambda: (run / "train").exists() and any((run / "train").iterdir())
    assert _wait_for(proc, started), proc.communicate()[1][-2000:]
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert f"resume with: python cli.py fit --resume {run}" in err
    assert "Traceback" not in err
    state = _latest(run)
    assert state is not None and state["kind"] in ("interrupt", "epoch") and state["global_step"] > 0
    assert (run / "checkpoints" / state["weights"]).is_file()


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(cli, tmp_path, capsys):
    run = tmp_path / "nan"
    rc = cli("fit", "--task", "classification", "--preset", "debug", "--run-dir", run, "--quiet",
             "--set", "learning_rate=1e38", "--set", "checkpoint_every_steps=1")
    assert rc == 3
    err = capsys.readouterr().err
    assert "error: loss became NaN/Inf at step 2; stopped" in err
    state = _latest(run)
    assert state["global_step"] == 1
    import h5py

    with h5py.File(run / "checkpoints" / state["weights"]) as f:
        arrays = []
        f.visititems(lambda name, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    assert arrays and all(np.all(np.isfinite(a)) for a in arrays if np.issubdtype(np.asarray(a).dtype, np.floating))
    assert not (run / "metrics.json").exists()


def test_resume_keeps_its_config_and_backend(cli, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("fit", "--task", "classification", "--preset", "debug", "--run-dir", run, "--quiet") == 0
    capsys.readouterr()
    assert cli("fit", "--resume", run, "--epochs", "9") == 2
    assert "epochs differ(s) from the run's config" in capsys.readouterr().err
    other = "jax" if BACKEND == "tensorflow" else "tensorflow"
    assert cli("--backend", other, "fit", "--resume", run) == 2
    assert f"was trained on {BACKEND}; resume it on {BACKEND}" in capsys.readouterr().err
    assert cli("fit", "--resume", run) == 0  # finished runs say so
    assert "already finished all 1 epochs" in capsys.readouterr().out
    assert cli("fit", "--resume", tmp_path / "nothing-here") == 2
    assert "holds no run" in capsys.readouterr().err


def test_unwritable_run_dir_is_a_one_line_error(cli, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli("fit", "--task", "classification", "--preset", "debug", "--run-dir", blocker / "run") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --run-dir {blocker / 'run'}: not writable") and "\n" not in err


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tmp_path):
    target = tmp_path / "step-1.weights.h5"
    target.write_bytes(b"previous good checkpoint")

    class DiesMidWrite:
        def save_weights(self, path):
            with open(path, "wb") as f:
                f.write(b"half a file")
            raise KeyboardInterrupt  # e.g. killed while writing

    with pytest.raises(KeyboardInterrupt):
        rundir.save_keras_atomically(DiesMidWrite(), target, weights_only=True)
    assert target.read_bytes() == b"previous good checkpoint"
    assert list(tmp_path.iterdir()) == [target], "no temporary file is left behind"

    rundir.write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def test_keeps_the_last_k_checkpoints_and_the_best(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("fit", "--task", "classification", "--preset", "debug", "--epochs", "3", "--run-dir", run,
               "--quiet", "--set", "keep_checkpoints=2", "--set", "checkpoint_every_steps=3") == 0
    names = sorted(p.name for p in (run / "checkpoints").glob("step-*.weights.h5"))
    assert names == ["step-00000021.weights.h5", "step-00000024.weights.h5"]
    assert (run / "checkpoints" / "best.weights.h5").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"]["metric"] == "val_accuracy"
    assert metrics["best"]["value"] == max(h["val_accuracy"] for h in metrics["history"])
