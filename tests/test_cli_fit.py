"""End-to-end through cli.py: the run directory contract, evaluate, predict, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import BACKEND, run_cli_subprocess
from pipelines import shapes


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    """One tiny classification run shared by the contract tests of this module."""
    import cli

    run_dir = tmp_path_factory.mktemp("run") / "r"
    rc = cli.main(["fit", "--task", "classification", "--preset", "debug", "--epochs", "2",
                   "--run-dir", str(run_dir), "--set", "log_every_steps=2", "--quiet"])
    assert rc == 0
    return run_dir


def test_run_directory_contract(debug_run):
    run = debug_run
    for name in ("config.json", "metrics.json", "model.keras", "data_info.json", "history.json",
                 "checkpoints/latest.json", "checkpoints/best.weights.h5"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "classification" and config["backend"] == BACKEND
    assert config["config"]["epochs"] == 2 and config["config"]["jit_compile"] is True
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backend"] == BACKEND
    assert set(metrics["train"]) >= {"loss", "accuracy"} and set(metrics["validation"]) >= {"loss", "accuracy"}
    assert 0.0 <= metrics["validation"]["accuracy"] <= 1.0
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]) == 2
    timing = metrics["timing"]
    assert timing["compile_s"] > 0 and timing["step_s"] > 0 and timing["steps_timed"] >= 10
    assert timing["examples_per_s"] == pytest.approx(32 / timing["step_s"])
    assert {"keras", "tensorflow", "jax"} <= set(metrics["versions"])
    latest = json.loads((run / "checkpoints/latest.json").read_text())
    assert latest["epoch"] == 2 and latest["global_step"] == 16 and (run / "checkpoints" / latest["weights"]).is_file()


def _events(run: Path, split: str):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run / split), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return acc


def test_tensorboard_scalars_hparams_and_images(debug_run):
    train = _events(debug_run, "train")
    tags = set(train.Tags()["tensors"])
    assert {"epoch/loss", "epoch/accuracy", "epoch/learning_rate", "step/loss", "step/learning_rate",
            "step/examples_per_s"} <= tags
    assert len(train.Tensors("epoch/loss")) == 2
    assert len(train.Tensors("step/loss")) == 16 // 2
    assert "hparams" in train.PluginTagToContent("hparams") or train.PluginTagToContent("hparams")
    hp = train.PluginTagToContent("hparams")
    blob = b"".join(hp.values())
    for key in (b"backend", b"jit_compile", b"batch_size", b"learning_rate", b"model", b"task"):
        assert key in blob
    val = _events(debug_run, "validation")
    assert {"epoch/loss", "epoch/accuracy"} <= set(val.Tags()["tensors"])
    assert "images/predictions" in val.Tags()["tensors"]


def test_evaluate_reproduces_the_validation_metrics(debug_run, cli, capsys):
    assert cli("evaluate", "--run-dir", debug_run) == 0
    out = json.loads((debug_run / "eval-validation.json").read_text())
    final = json.loads((debug_run / "metrics.json").read_text())["validation"]
    assert out["metrics"]["accuracy"] == pytest.approx(final["accuracy"], abs=1e-6)
    assert "accuracy" in capsys.readouterr().out


def test_predict_writes_labels_for_image_files(debug_run, cli, tmp_path, capsys):
    paths = []
    for i in range(3):
        scene = shapes.render_scene(shapes.SceneSpec(size=40), 9, "test", i)
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(scene.image).save(paths[-1])
    assert cli("predict", "--run-dir", debug_run, "--out", tmp_path / "out", *paths) == 0
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [r["input"] for r in rows] == [str(p) for p in paths]
    for r in rows:
        assert r["label"] in shapes.SHAPES and 0 < r["probability"] <= 1
        assert sum(r["top"].values()) <= 1.0 + 1e-5
    assert capsys.readouterr().out.count('"label"') == 3
    assert cli("predict", "--run-dir", debug_run, tmp_path / "nope.png") == 2


def test_user_errors_are_one_line_with_exit_code_2(cli, capsys):
    assert cli("fit", "--task", "nope") == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown task 'nope'; valid tasks: " + err.split("valid tasks: ")[1]
    assert "\n" not in err and "classification" in err
    assert cli("fit", "--task", "classification", "--set", "epochs=x") == 2
    assert capsys.readouterr().err.strip() == "error: --set epochs='x': expected int, got str"
    assert cli("fit", "--task", "classification", "--data", "/no/such/dir") == 2
    assert "--data /no/such/dir: no such file or directory" in capsys.readouterr().err
    assert cli("evaluate", "--run-dir", "/no/such/run") == 2
    assert "holds no run" in capsys.readouterr().err


def test_tasks_command_lists_classification(cli, capsys):
    assert cli("tasks", "--task", "classification") == 0
    out = capsys.readouterr().out
    assert "classification" in out and "cnn | resnet" in out and "debug, small" in out
    assert "learning_rate" in out and "image_size" in out


def test_backend_flag_is_applied_before_keras_import_and_recorded(tmp_path):
    """A fresh process: --backend (before or after the subcommand) decides what really runs."""
    other = "jax" if BACKEND == "tensorflow" else "tensorflow"
    proc = run_cli_subprocess("--backend", other, "fit", "--task", "classification", "--preset", "debug",
                              "--set", "num_train=64", "--set", "num_val=32", "--run-dir", tmp_path / "r",
                              backend=BACKEND)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["backend"] == other
    assert f"on {other}" in proc.stdout


def test_stray_keras_import_with_another_backend_fails_loudly():
    import sys

    from training.backend import select_backend

    other = "jax" if BACKEND == "tensorflow" else "tensorflow"
    assert "keras" in sys.modules
    with pytest.raises(RuntimeError, match=f"keras was imported with backend '{BACKEND}' before --backend '{other}'"):
        select_backend(other)
    assert select_backend(BACKEND) == BACKEND
    from errors import UserError

    with pytest.raises(UserError, match="unknown backend; valid backends: tensorflow, jax"):
        select_backend("torch")


def test_debug_flag_shows_the_traceback(cli, capsys):
    assert cli("--debug", "fit", "--task", "nope") == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "UserError: unknown task 'nope'" in err


def test_unknown_backend_is_refused_before_anything_runs():
    proc = run_cli_subprocess("--backend", "torch", "tasks")
    assert proc.returncode == 2
    assert "argument --backend: invalid choice: 'torch'" in proc.stderr


def test_tensorboard_command_serves_the_log_root_and_prints_its_url(tmp_path):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from conftest import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "tensorboard", "--logdir", str(tmp_path),
                             "--port", str(port), "--host", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        end = time.time() + 120
        while time.time() < end and "TensorBoard http" not in line:
            line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
