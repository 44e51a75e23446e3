"""A quiet, fast start: mistakes are answered before keras/TensorFlow/JAX load, and their C++
start-up logs stay hidden unless asked for (--verbose), without hiding real import errors."""

import json
import os
import sys
import time

import pytest

from conftest import BACKEND, ROOT, run_cli_subprocess

HEAVY = ("tensorflow", "jax", "jaxlib", "keras")
NOISE = ("I0000", "WARNING: All log messages", "E0000", "oneDNN", "cuda")
# An idle machine answers `fit --task nope` in ~0.3 s (the acceptance bar is 1 s); CI machines are
# shared, so the bound has margin. Importing TensorFlow alone takes longer than this.
START_BUDGET_S = 3.0

# Run cli.main in a fresh interpreter, then report which heavy packages got imported.
PROBE = """
import json, sys
import cli
try:
    rc = cli.main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print("HEAVY=" + json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(%r))))
sys.exit(rc)
""" % (HEAVY,)


def _heavy_imported(argv) -> tuple[int, list, str]:
    import subprocess

    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)
    marker = [line for line in proc.stdout.splitlines() if line.startswith("HEAVY=")]
    assert marker, proc.stdout + proc.stderr
    return proc.returncode, json.loads(marker[-1][len("HEAVY="):]), proc.stdout + proc.stderr


def test_unknown_task_is_one_line_exit_2_and_fast():
    start = time.perf_counter()
    proc = run_cli_subprocess("fit", "--task", "nope", backend=BACKEND, timeout=60)
    wall = time.perf_counter() - start
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("error: unknown task 'nope'; valid tasks: "), lines
    assert wall < START_BUDGET_S, f"{wall:.2f} s"


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["tasks"], 0),
    (["tasks", "--task", "classification"], 0),
    (["fit", "--task", "nope"], 2),
    (["fit", "--task", "classification", "--set", "nope=1"], 2),
    (["fit", "--task", "classification", "--set", "epochs=x"], 2),
    (["fit", "--task", "classification", "--preset", "nope"], 2),
    (["fit", "--task", "classification", "--data", "no/such/folder"], 2),
    (["fit", "--task", "text-classification", "--set", "model=gpt"], 2),
    (["fit", "--task", "gan", "--set", "shapes_style=photo"], 2),
    (["compare", "--task", "classification", "--backends", "torch"], 2),
    (["tune", "--task", "classification", "--space", "width=uniform(8,64)"], 2),
    (["tune", "--resume", "no/such/study"], 2),
    (["evaluate", "--run-dir", "no/such/run"], 2),
    (["predict", "--run-dir", "no/such/run", "x.png"], 2),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_answers_without_importing_tensorflow_jax_or_keras(argv, code):
    rc, heavy, output = _heavy_imported(argv)
    assert rc == code, output
    assert heavy == [], f"{argv} imported {heavy}"
    assert not any(marker in output for marker in NOISE), output


@pytest.fixture(scope="module")
def tiny_fit(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("quiet") / "run"
    proc = run_cli_subprocess("fit", "--task", "classification", "--preset", "debug", "--set", "num_train=64",
                              "--set", "num_val=32", "--run-dir", run_dir, "--quiet", backend=BACKEND)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run_dir, proc


def test_a_short_fit_writes_no_start_up_noise(tiny_fit):
    _, fit = tiny_fit
    assert fit.stderr == "", fit.stderr
    assert not any(marker in fit.stdout for marker in NOISE), fit.stdout


@pytest.mark.parametrize("argv, expected", [
    (["evaluate", "--data", "{empty}"], "error: --data {empty}: expected a folder"),
    (["predict", "no/such/image.png"], "error: "),
], ids=["evaluate", "predict"])
def test_errors_after_start_are_still_one_line(tiny_fit, tmp_path, argv, expected):
    """evaluate and predict start the backend and load the model before these errors: no noise."""
    run_dir, _ = tiny_fit
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    argv, expected = [a.format(empty=empty) for a in argv], expected.format(empty=empty)
    proc = run_cli_subprocess(argv[0], "--run-dir", run_dir, *argv[1:])
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), lines


@pytest.mark.parametrize("flags, env", [(["--verbose"], {}), ([], {"TF_CPP_MIN_LOG_LEVEL": "0"})],
                         ids=["--verbose", "TF_CPP_MIN_LOG_LEVEL=0"])
def test_verbose_shows_start_up_logs(flags, env, tmp_path):
    """The start-up lines come back when asked for (a batch larger than the data fails right after start)."""
    proc = run_cli_subprocess(*flags, "fit", "--task", "classification", "--preset", "debug", "--set", "num_train=64",
                              "--batch-size", "1000", "--run-dir", tmp_path / "run", backend=BACKEND, env=env)
    assert proc.returncode == 2 and "--batch-size 1000" in proc.stderr, proc.stderr
    assert any(marker in proc.stderr for marker in ("I0000", "WARNING: All log messages")), proc.stderr


def test_a_failing_import_still_reaches_the_user(tmp_path):
    """What a broken install writes to fd 2 while failing, and the error itself, are both shown."""
    fake = tmp_path / "keras"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\nos.write(2, b'libfake.so: cannot open shared object file\\n')\n"
        "raise ImportError('fake keras is broken')\n")
    proc = run_cli_subprocess("fit", "--task", "classification", "--preset", "debug", backend=BACKEND,
                              env={"PYTHONPATH": str(tmp_path)}, timeout=60)
    assert proc.returncode != 0
    assert "libfake.so: cannot open shared object file" in proc.stderr, proc.stderr
    assert "ImportError: fake keras is broken" in proc.stderr, proc.stderr


def test_hidden_start_up_logs_are_replayed_only_on_error(capfd):
    from training.backend import start_up_logs_hidden

    with start_up_logs_hidden():
        os.write(2, b"noise while loading\n")
    with pytest.raises(RuntimeError, match="load failed"):
        with start_up_logs_hidden():
            os.write(2, b"why it failed\n")
            raise RuntimeError("load failed")
    with start_up_logs_hidden(hide=False):
        os.write(2, b"verbose line\n")
    err = capfd.readouterr().err
    assert "noise while loading" not in err
    assert "why it failed" in err and "verbose line" in err


def test_model_choices_name_real_builders():
    """Task modules name their model builders as strings (importing keras_models imports keras)."""
    from keras_models import text as text_models
    from tasks import classification, detection, segmentation, text_classification

    for task_module, builders in ((classification, classification.classifier),
                                  (segmentation, segmentation.unet), (detection, detection.detector)):
        for name, builder in task_module.MODELS.items():
            assert callable(getattr(builders, builder)), (task_module.__name__, name)
    assert set(text_classification.MODEL_NAMES) == set(text_models.MODELS)
