"""Reliability: exact resume after kill -9, one writer per run directory, damaged checkpoints, full disks,
foreign weight files, NaN guard, SIGTERM, atomic checkpoints, clear errors."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKEND, FAST_JIT, ROOT
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


# Exact resume: dropout off, augmentation on, a warm-up + cosine schedule, 8 steps per epoch, 3 epochs,
# a checkpoint every 3 steps. The run freezes after step 11 (latest checkpoint: step 9, mid-epoch 2).
EXACT = ["--task", "classification", "--preset", "debug", "--epochs", "3", "--quiet", "--set", "dropout=0.0",
         "--set", "checkpoint_every_steps=3", "--set", "warmup_steps=4", "--set", FAST_JIT]
FINAL = "step-00000024.weights.h5"


def _arrays(path):
    import h5py

    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def max_abs_difference(a, b) -> float:
    """Largest difference over every variable of two checkpoints: weights and optimizer state."""
    a, b = _arrays(a), _arrays(b)
    assert a.keys() == b.keys() and any(k.startswith("optimizer/") for k in a)
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)), initial=0.0)) for k in a)


def _main(*argv):
    import cli as cli_module

    return cli_module.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run frozen after step 11 while a second writer tries its run directory, then killed with
    SIGKILL; a copy of it (for the damaged-checkpoint test); its resume; and the uninterrupted run."""
    root = tmp_path_factory.mktemp("exact")
    killed, marker = root / "killed", root / "frozen"
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "stop_at_step.py"), "11", str(marker), "fit", *EXACT,
                             "--run-dir", str(killed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    assert _wait_for(proc, marker.exists), proc.communicate()[1][-2000:]
    started = time.perf_counter()
    second = subprocess.run([sys.executable, str(ROOT / "cli.py"), "fit", *EXACT, "--run-dir", str(killed)],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    second_s = time.perf_counter() - started
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    state = _latest(killed)
    shutil.copytree(killed, root / "damaged")
    assert _main("fit", "--resume", killed) == 0
    # keep_checkpoints does not change training: the straight run also proves the pruning of old checkpoints.
    assert _main("fit", *EXACT, "--set", "keep_checkpoints=2", "--run-dir", root / "straight") == 0
    return {"root": root, "killed": killed, "state": state, "pid": proc.pid, "rc": proc.returncode,
            "second": second, "second_s": second_s, "straight": root / "straight"}


def test_a_second_writer_exits_2_at_once_naming_the_holder(runs):
    second = runs["second"]
    assert second.returncode == 2, second.stderr[-2000:]
    err = second.stderr.strip()
    assert "\n" not in err and err.startswith(f"error: --run-dir {runs['killed']}: in use by pid {runs['pid']} on ")
    assert runs["second_s"] < 2.0, f"the second writer took {runs['second_s']:.2f} s to be refused"


def test_kill_9_mid_epoch_then_resume_ends_with_the_uninterrupted_weights(runs):
    killed, state = runs["killed"], runs["state"]
    assert runs["rc"] == -signal.SIGKILL
    assert state["global_step"] == 9 and state["epoch"] == 1 and state["step_in_epoch"] == 1
    resumed = json.loads((killed / "metrics.json").read_text())
    assert resumed["epochs_completed"] == 3 and resumed["global_step"] == 24 and resumed["resumed_from_step"] == 9
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert not (killed / ".lock").exists(), "the resumed run released the lock it took over"
    # Weights and optimizer state (moments, iteration count = schedule position) equal the straight run's.
    assert max_abs_difference(killed / "checkpoints" / FINAL, runs["straight"] / "checkpoints" / FINAL) <= 1e-6
    straight = json.loads((runs["straight"] / "metrics.json").read_text())
    assert resumed["validation"] == pytest.approx(straight["validation"], rel=1e-5, abs=1e-6)

    # TensorBoard step curves continue past the checkpoint instead of restarting at 0.
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(killed / "train"), size_guidance={"tensors": 0})
    acc.Reload()
    steps = sorted({e.step for e in acc.Tensors("step/loss")})
    assert steps[-1] == 24 and min(s for s in steps if s > 9) <= 9 + 2


def test_a_truncated_newest_checkpoint_resumes_from_the_previous_one(runs, capsys):
    run = runs["root"] / "damaged"  # the killed run as it was left: checkpoints at steps 8 (epoch end) and 9
    newest = run / "checkpoints" / "step-00000009.weights.h5"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # as after a power loss
    capsys.readouterr()
    assert _main("fit", "--resume", run) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "truncated" in line]
    assert len(warning) == 1 and str(newest) in warning[0] and "step-00000008.weights.h5 (step 8)" in warning[0]
    assert "from step 8 (epoch 2/3)" in captured.out
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 24
    assert max_abs_difference(run / "checkpoints" / FINAL, runs["straight"] / "checkpoints" / FINAL) <= 1e-6


def test_a_full_disk_stops_with_one_line_leaves_the_previous_checkpoint_and_resume_works(runs, tmp_path, monkeypatch,
                                                                                    capsys):
    import errno

    import keras

    run = tmp_path / "full"
    real_save_weights = keras.Model.save_weights

    def save_weights_until_the_disk_is_full(self, path, *args, **kwargs):
        if "step-00000015" in str(path):  # the checkpoint of step 15 hits a full disk half-way
            Path(path).write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save_weights(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", save_weights_until_the_disk_is_full)
    capsys.readouterr()
    assert _main("fit", *EXACT, "--run-dir", run) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith(f"error: no space left on device writing {run / 'checkpoints' / 'step-00000015.weights.h5'}: "
                          "it needs about ") and f"python cli.py fit --resume {run}" in err
    state = _latest(run)
    assert state["global_step"] == 12
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")) == []  # no temporaries
    assert not (run / ".lock").exists()
    _arrays(run / "checkpoints" / state["weights"])  # the previous checkpoint is loadable

    monkeypatch.setattr(keras.Model, "save_weights", real_save_weights)  # space freed
    assert _main("fit", "--resume", run) == 0
    assert max_abs_difference(run / "checkpoints" / FINAL, runs["straight"] / "checkpoints" / FINAL) <= 1e-6


def test_evaluate_reads_a_run_while_another_process_holds_its_lock(runs, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = runs["straight"] / ".lock"
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now",
                                    "command": "cli.py fit (test)"}))
        assert _main("evaluate", "--run-dir", runs["straight"], "--checkpoint", "last") == 0
        assert _main("fit", "--resume", runs["straight"]) == 2
        assert f"in use by pid {holder.pid} on {socket.gethostname()}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert _main("fit", "--resume", runs["straight"]) == 0  # holder gone: the stale lock is taken over
    err = capsys.readouterr().err
    assert f"taking over the stale lock of pid {holder.pid}" in err
    assert not lock.exists()


def test_init_weights_and_resume_refuse_files_that_are_not_this_models(runs, tmp_path, capsys):
    other_width = ["fit", "--task", "classification", "--preset", "debug", "--set", "width=4", "--quiet"]
    checkpoint = runs["straight"] / "checkpoints" / FINAL
    assert _main(*other_width, "--run-dir", tmp_path / "a", "--init-weights", checkpoint) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: --init-weights {checkpoint}: not a weights file of this model (")
    assert "in the file," in err and "in this model" in err

    fake = tmp_path / "evil.weights.h5"
    fake.write_bytes(b"\x80\x04\x95 a pickle, not HDF5")
    assert _main(*other_width, "--run-dir", tmp_path / "b", "--init-weights", fake) == 2
    assert f"--init-weights {fake}: not a readable HDF5 weights file" in capsys.readouterr().err
    keras_file = runs["straight"] / "model.keras"
    assert _main(*other_width, "--run-dir", tmp_path / "c", "--init-weights", keras_file) == 2
    assert "expected a .weights.h5 file" in capsys.readouterr().err


def _checkpoint(folder, step, payload: bytes, best=None):
    from training import checkpoints

    name = f"step-{step:08d}.weights.h5"
    (folder / name).write_bytes(payload)
    state = {"weights": name, "global_step": step, "epoch": 0, "step_in_epoch": step, "best_value": best,
             **checkpoints.digest(folder / name)}
    rundir.write_json(folder / checkpoints.record_name(name), state)
    rundir.write_json(folder / checkpoints.LATEST, state)
    return folder / name


def test_resume_point_falls_back_past_a_damaged_latest_json_and_corrupt_files(tmp_path):
    from errors import UserError
    from training import checkpoints

    _checkpoint(tmp_path, 3, b"three" * 100)
    _checkpoint(tmp_path, 6, b"six" * 100)
    assert checkpoints.resume_point(tmp_path) == (json.loads((tmp_path / "latest.json").read_text()), None)
    (tmp_path / "latest.json").write_text('{"weights": "step-000')  # truncated by a power loss
    state, note = checkpoints.resume_point(tmp_path)
    assert state["global_step"] == 6 and note.startswith(f"{tmp_path / 'latest.json'}: damaged")
    newest = _checkpoint(tmp_path, 9, b"nine" * 100)
    newest.write_bytes(b"NINE" * 100)  # same size, other bytes
    state, note = checkpoints.resume_point(tmp_path)
    assert state["global_step"] == 6 and note == (
        f"{newest}: corrupt (its SHA-256 differs from the one recorded when it was written); resuming from the "
        "newest intact checkpoint, step-00000006.weights.h5 (step 6)")
    for path in tmp_path.glob("*.weights.h5"):
        path.write_bytes(b"")
    with pytest.raises(UserError, match=r"--resume .*: no intact checkpoint in .*truncated or damaged \(0 bytes on disk"):
        checkpoints.resume_point(tmp_path)


def test_a_lock_is_stale_only_when_its_process_is_gone_from_this_host(tmp_path):
    from errors import UserError
    from training import runlock

    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "2026-01-01T00:00:00", "command": "cli.py fit"}))
    with pytest.raises(UserError, match=r"in use by pid 1 on elsewhere since 2026-01-01T00:00:00 \(cli.py fit\)"):
        runlock.acquire(tmp_path)  # another host: never judged stale, whatever its age
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
    with runlock.held(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with runlock.held(tmp_path):  # the holder may take it again (fit inside the fit command)
            pass
    assert not lock.exists()


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
             "--set", "learning_rate=1e38", "--set", "checkpoint_every_steps=1", "--set", FAST_JIT)
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


def test_resume_keeps_its_config_and_backend(runs, tmp_path, capsys):
    run = runs["straight"]
    assert _main("fit", "--resume", run, "--epochs", "9") == 2
    assert "epochs differ(s) from the run's config" in capsys.readouterr().err
    other = "jax" if BACKEND == "tensorflow" else "tensorflow"
    assert _main("--backend", other, "fit", "--resume", run) == 2
    assert f"was trained on {BACKEND}; resume it on {BACKEND}" in capsys.readouterr().err
    assert _main("fit", "--resume", run) == 0  # finished runs say so
    assert "already finished all 3 epochs" in capsys.readouterr().out
    assert _main("fit", "--resume", tmp_path / "nothing-here") == 2
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


def test_keeps_the_last_k_checkpoints_and_the_best(runs):
    run = runs["straight"]  # 3 epochs of 8 steps, a checkpoint every 3 steps, keep_checkpoints=2
    names = sorted(p.name for p in (run / "checkpoints").glob("step-*.weights.h5"))
    assert names == ["step-00000021.weights.h5", "step-00000024.weights.h5"]
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*.json")) == [
        "step-00000021.json", "step-00000024.json"]  # their records go with them
    assert (run / "checkpoints" / "best.weights.h5").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"]["metric"] == "val_accuracy"
    assert metrics["best"]["value"] == max(h["val_accuracy"] for h in metrics["history"])
