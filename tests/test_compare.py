"""compare: one report over runs in separate processes from the same initial weights.

Each compare spawns its own fit processes per backend; the TensorFlow suite compares both backends,
the JAX suite runs a TensorFlow fit from JAX-built initial weights (the cross-backend direction).
"""

import json
import sys

import pytest

from conftest import BACKEND, ROOT

TINY = ["--task", "classification", "--preset", "debug", "--set", "num_train=96", "--set", "num_val=32"]


def _report(out):
    return json.loads((out / "report.json").read_text())


def _expected_initial_loss(out):
    """The first training batch's inference-mode loss under the saved initial weights, computed here."""
    from tasks.base import get_task, resolve_config
    from training.loop import _initial_loss, build_compiled_model, build_data

    task = get_task("classification")
    cfg = resolve_config(task, "debug", sets=["num_train=96", "num_val=32"])
    data = build_data(task, cfg)
    model = build_compiled_model(task, cfg, data.info, total_steps=1)
    model.load_weights(out / "initial.weights.h5")
    return _initial_loss(model, data, cfg)


def test_report_holds_every_field_and_runs_start_from_the_same_weights(cli, tmp_path, capsys):
    backends = "tensorflow,jax" if BACKEND == "tensorflow" else "tensorflow"
    out = tmp_path / "cmp"
    assert cli("compare", *TINY, "--backends", backends, "--out", out) == 0
    printed = capsys.readouterr().out
    report = _report(out)
    names = [r["name"] for r in report["runs"]]
    assert names == [f"{b}-jit-on" for b in backends.split(",")]
    for name in names:
        assert name in printed
    for key in ("task", "config", "machine", "versions", "initial_loss_agreement", "runs", "step_time_definition"):
        assert key in report
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    expected = _expected_initial_loss(out)
    for run in report["runs"]:
        assert run["status"] == "ok", run.get("error")
        assert run["backend_ran"] == run["backend"]
        for key in ("first_loss", "initial_loss", "compile_s", "step_s", "step_s_p10", "step_s_p90",
                    "examples_per_s", "fit_wall_s", "memory", "validation", "train", "command"):
            assert run[key] is not None, key
        assert run["memory"]["peak_rss_mb"] > 0
        assert "accuracy" in run["validation"]
        assert run["command"].startswith(f"python cli.py --backend {run['backend']} fit --task classification")
        # The same initial weights were really loaded in every process, whatever its backend.
        assert run["initial_loss"] == pytest.approx(expected, rel=1e-4)
        fit_metrics = json.loads((out / run["name"] / "metrics.json").read_text())
        assert run["step_s"] == fit_metrics["timing"]["step_s"], "the report shows fit's own measurement"
        assert (out / run["name"] / "train").is_dir(), "TensorBoard runs live under the compare folder"
    assert report["initial_loss_agreement"]["ok"] is True
    md = (out / "report.md").read_text()
    assert "Reproduce each run" in md and report["machine"]["cpu"] in md
    assert (out / "report.png").stat().st_size > 10_000


def test_a_crashed_run_is_reported_not_fatal(cli, tmp_path, monkeypatch, capsys):
    """A wrapper CLI fails the jax run; the tensorflow run and the report survive."""
    from training import compare

    fake = tmp_path / "cli_failing_jax.py"
    fake.write_text(
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "if sys.argv[sys.argv.index('--backend') + 1] == 'jax':\n"
        "    print('error: simulated crash of the jax run', file=sys.stderr); sys.exit(1)\n"
        f"sys.argv[0] = {str(ROOT / 'cli.py')!r}\n"
        f"runpy.run_path({str(ROOT / 'cli.py')!r}, run_name='__main__')\n")
    monkeypatch.setattr(compare, "CLI", fake)
    out = tmp_path / "cmp"
    assert cli("compare", *TINY, "--backends", "jax,tensorflow", "--out", out) == 0
    runs = {r["name"]: r for r in _report(out)["runs"]}
    assert runs["jax-jit-on"]["status"] == "failed"
    assert runs["jax-jit-on"]["error"] == "error: simulated crash of the jax run"
    assert runs["tensorflow-jit-on"]["status"] == "ok"
    assert "FAILED: error: simulated crash of the jax run" in (out / "report.md").read_text()
    assert "FAILED" in capsys.readouterr().out


def test_variants_and_their_errors():
    from errors import UserError
    from training.compare import parse_variants

    assert [v.name for v in parse_variants("tensorflow,jax", "on,off")] == [
        "tensorflow-jit-on", "jax-jit-on", "tensorflow-jit-off", "jax-jit-off"]
    with pytest.raises(UserError, match="unknown backend 'torch'"):
        parse_variants("tensorflow,torch", "on")
    with pytest.raises(UserError, match="expected on, off or on,off"):
        parse_variants("jax", "maybe")


def test_initial_loss_disagreement_is_flagged():
    from training.compare import check_initial_losses

    rows = [{"name": "a", "status": "ok", "initial_loss": 1.0}, {"name": "b", "status": "ok", "initial_loss": 1.2}]
    assert check_initial_losses(rows)["ok"] is False
    rows[1]["initial_loss"] = 1.0000001
    assert check_initial_losses(rows)["ok"] is True
