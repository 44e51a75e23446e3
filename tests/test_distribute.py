"""--distribute: data parallelism on simulated CPU devices gives what one device gives.

One subprocess per backend (the device count must be fixed before JAX or TensorFlow starts)
fits tiny classification on 1 device and data-parallel on 2 (dropout 0: TensorFlow replicas draw
their own dropout masks); the first losses must agree within 1e-4 relative. The second loss
follows the first update, so it checks that the replicas' gradients are averaged, not summed.
"""

import json
import os
import subprocess
import sys

import pytest

from errors import UserError

from conftest import BACKEND, ROOT

RTOL = 1e-4


@pytest.fixture(scope="module")
def runs():
    env = {**os.environ, "KERAS_BASELINES_CPU_DEVICES": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "distribute_worker.py"), BACKEND], env=env,
                          capture_output=True, text=True, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(line[len("RESULT "):])


def test_data_parallel_matches_one_device(runs):
    one, two = runs["none"], runs["data-parallel"]
    assert one["distribution"]["replicas"] == 1 and one["placed_on"] == 1
    assert two["distribution"]["replicas"] == 2 and two["placed_on"] == 2  # the engine really mirrored it
    assert two["distribution"]["per_replica_batch"] == 16 and two["distribution"]["simulated_cpu_devices"]
    assert len(one["losses"]) == len(two["losses"]) == 2
    for a, b in zip(one["losses"], two["losses"]):
        assert abs(a - b) <= RTOL * abs(a), (one["losses"], two["losses"])
    assert one["losses"][0] != one["losses"][1]  # the second loss saw an update
    assert abs(one["validation"]["loss"] - two["validation"]["loss"]) <= 1e-3 * one["validation"]["loss"]


def test_batch_that_does_not_divide_is_one_line(runs):
    assert runs["batch_error"] == ("--batch-size 33: must divide evenly across the 2 data-parallel replicas "
                                   "(global batch = --batch-size); use a multiple of 2")


def test_flag_reaches_the_config():
    import cli
    from tasks.base import get_task, resolve_config
    from training.commands import _fit_args, _flags

    args = cli.build_parser().parse_args(["fit", "--task", "classification", "--distribute", "data-parallel"])
    assert resolve_config(get_task("classification"), None, _flags(args)).distribute == "data-parallel"
    compare = cli.build_parser().parse_args(["compare", "--task", "classification", "--distribute", "auto"])
    assert _fit_args(compare)[-2:] == ["--distribute", "auto"]  # every compared run gets it
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["fit", "--task", "classification", "--distribute", "model-parallel"])


@pytest.mark.skipif(BACKEND != "jax", reason="model parallelism is JAX only (TensorFlow: see the next test)")
def test_model_parallel_splits_big_kernels_and_trains(runs):
    mp = runs["model_parallel"]
    assert any(path.endswith("embeddings") for path in mp["sharded"]), mp["sharded"]
    assert mp["losses"] and all(loss == loss and loss < 100 for loss in mp["losses"])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the TensorFlow refusal")
def test_model_parallel_on_tensorflow_is_one_line():
    from errors import UserError
    from tasks.base import get_task, resolve_config
    from training import distribute

    cfg = resolve_config(get_task("text-classification"), "debug", None, ["distribute=model-parallel"])
    with pytest.raises(UserError, match=r"^--set distribute=model-parallel: JAX only"):
        distribute.plan(cfg)


def _row(tmp_path, name, devices, step_s, losses, initial):
    run = tmp_path / name
    run.mkdir()
    (run / "steps.json").write_text(json.dumps({"step_s": [], "loss": [[i + 1, v] for i, v in enumerate(losses)]}))
    return {"name": name, "backend": "jax", "jit": True, "devices": devices, "status": "ok", "run_dir": str(run),
            "step_s": step_s, "examples_per_s": 32 / step_s, "initial_loss": initial}


def test_scaling_report_flags_disagreeing_losses_and_says_simulated_devices_share_cores(tmp_path):
    from training import scaling
    from training.compare import parse_variants

    rows = [_row(tmp_path, "one", 1, 0.10, [2.0, 1.9, 1.8], 2.1),
            _row(tmp_path, "two", 2, 0.08, [2.0, 1.9 * (1 + 5e-5), 1.8], 2.1),
            _row(tmp_path, "four", 4, 0.20, [2.0, 1.95, 1.8], 2.1)]
    real = {e["name"]: e for e in scaling.report(rows, simulated=False, cores=2)["runs"]}
    assert real["two"]["speedup"] == pytest.approx(1.25) and real["two"]["efficiency"] == pytest.approx(0.625)
    report = scaling.report(rows, simulated=True, cores=2)
    by = {e["name"]: e for e in report["runs"]}
    assert "speedup" not in by["two"] and by["two"]["step_time_ratio"] == pytest.approx(1.25)
    assert by["two"]["loss_agreement"]["ok"] and not by["four"]["loss_agreement"]["ok"]
    assert by["one"]["loss_agreement"]["steps_compared"] == 4  # initial loss + 3 training losses
    text = scaling.markdown(report)
    assert "share the same 2 cores, so no speed-up is expected and none is reported" in text and "DISAGREE" in text
    assert "speed-up |" not in text and "efficiency" not in text.split("|---")[0].splitlines()[-1]
    assert [v.name for v in parse_variants("tensorflow,jax", "on", "1,2")] == [
        "tensorflow-jit-off-1dev", "tensorflow-jit-off-2dev", "jax-jit-on-1dev", "jax-jit-on-2dev"]
    with pytest.raises(UserError, match=r"^--devices 1,x: expected distinct positive replica counts"):
        parse_variants("jax", "on", "1,x")
