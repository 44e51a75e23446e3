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


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One compare (a report shared by the tests below) through a wrapper CLI that fails every jit-off
    run at once: the jit-on runs are real fits, the others show how a crashed run is reported.
    The TensorFlow suite compares both backends; the JAX suite trains on TensorFlow from JAX-built weights."""
    import cli
    from training import compare

    root = tmp_path_factory.mktemp("compare")
    fake = root / "cli_failing_no_jit.py"
    fake.write_text(
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "if '--no-jit' in sys.argv:\n"
        "    print('error: simulated crash of the jit-off run', file=sys.stderr); sys.exit(1)\n"
        f"sys.argv[0] = {str(ROOT / 'cli.py')!r}\n"
        f"runpy.run_path({str(ROOT / 'cli.py')!r}, run_name='__main__')\n")
    backends = "tensorflow,jax" if BACKEND == "tensorflow" else "tensorflow"
    out = root / "cmp"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare, "CLI", fake)
        patch.chdir(root)
        import io
        from contextlib import redirect_stdout

        printed = io.StringIO()
        with redirect_stdout(printed):
            code = cli.main(["compare", *TINY, "--backends", backends, "--jit", "on,off", "--out", str(out)])
    assert code == 0, printed.getvalue()[-2000:]
    return out, backends.split(","), printed.getvalue()


def test_report_holds_every_field_and_runs_start_from_the_same_weights(compared):
    out, backends, printed = compared
    report = _report(out)
    names = [r["name"] for r in report["runs"]]
    assert names == [f"{b}-jit-{mode}" for mode in ("on", "off") for b in backends]
    for name in names:
        assert name in printed
    for key in ("task", "config", "machine", "versions", "initial_loss_agreement", "runs", "step_time_definition"):
        assert key in report
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    expected = _expected_initial_loss(out)
    for run in (r for r in report["runs"] if r["jit"]):
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


def test_a_crashed_run_is_reported_not_fatal(compared):
    """The wrapper CLI failed the jit-off runs; the real runs and the report survive."""
    out, backends, printed = compared
    runs = {r["name"]: r for r in _report(out)["runs"]}
    for backend in backends:
        assert runs[f"{backend}-jit-off"]["status"] == "failed"
        assert runs[f"{backend}-jit-off"]["error"] == "error: simulated crash of the jit-off run"
        assert runs[f"{backend}-jit-on"]["status"] == "ok"
    assert "FAILED: error: simulated crash of the jit-off run" in (out / "report.md").read_text()
    assert "FAILED" in printed


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
