#!/usr/bin/env python
"""Train a reference Keras 3 model for a task on TensorFlow or JAX.

  python cli.py tasks
  python cli.py fit --task classification [--backend jax] [--set model=resnet]
  python cli.py evaluate --task classification --run-dir tensorboard_logs/classification/<run>
  python cli.py predict --task classification --run-dir <run> image1.png image2.jpg
  python cli.py compare --task classification --preset debug
  python cli.py export --run-dir <run> --format onnx
  python cli.py tensorboard

This file only parses arguments: it sets KERAS_BACKEND before anything imports keras. Commands
check their arguments and config before the backend starts, so mistakes are answered at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from errors import UserError

BACKENDS = ("tensorflow", "jax")
LOG_ROOT = "tensorboard_logs"

EPILOG = """examples:
  python cli.py fit --task classification                      # embedded default data, TensorFlow
  python cli.py fit --task classification --backend jax --set model=resnet --epochs 5
  python cli.py fit --task classification --data tfds:mnist --preset small
  python cli.py fit --task classification --data path/to/class_folders
  python cli.py fit --resume tensorboard_logs/classification/20261124-101500-tensorflow
"""


EXPORT_EPILOG = """examples:
  python cli.py export --run-dir tensorboard_logs/classification/<run> --format saved_model
  python cli.py export --run-dir <run> --format litert --quantize dynamic
  python cli.py predict --run-dir <run> --artifact <run>/export/onnx/model.onnx image.png
Export runs on TensorFlow (the exporters are TensorFlow tools) whatever backend trained the run. The
artifact is then loaded with its own runtime and compared with the Keras model on validation batches;
export_report.json holds the differences, the task's metric through the artifact, size and latency.
A difference beyond the tolerance exits with code 4. Exporters: pip install -e ".[export]"
"""


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    """--backend/--debug work before or after the subcommand; a subcommand never resets them."""
    p.add_argument("--backend", choices=BACKENDS + ("auto",), default=None if top else argparse.SUPPRESS,
                   help="tensorflow or jax (default: $KERAS_BACKEND, else tensorflow); fit also takes auto (probe "
                        "both on the run's model and data, keep the faster). Example: --backend jax")
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="show full tracebacks for errors")
    p.add_argument("--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="show TensorFlow/XLA/JAX start-up and C++ logs (hidden unless TF_CPP_MIN_LOG_LEVEL=0)")


COMPARE_EPILOG = """examples:
  python cli.py compare --task classification --preset debug
  python cli.py compare --task classification --jit on,off --epochs 3
Each configuration runs `fit` in its own process from the same initial weights, seed and data
order; the report (table, report.md, report.json, report.png) and every run's TensorBoard logs
land in one folder.
"""


def _fit_flags(p: argparse.ArgumentParser) -> None:
    """The flags that define a training run (shared by fit and compare)."""
    p.add_argument("--task", help="task name (see `cli.py tasks`). Example: --task classification")
    p.add_argument("--data", help="embedded (default) | tfds:NAME | a path. Example: --data tfds:mnist")
    p.add_argument("--epochs", type=int, help="number of epochs. Example: --epochs 5")
    p.add_argument("--batch-size", type=int, help="examples per step. Example: --batch-size 128")
    p.add_argument("--preset", help="named config preset of the task (e.g. debug, small). Example: --preset debug")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (Python literal; repeatable). Example: --set model=resnet --set learning_rate=1e-3")
    p.add_argument("--no-jit", action="store_true", help="do not XLA-compile the train step (for comparison)")
    p.add_argument("--seed", type=int, help="random seed for data order, augmentation and init. Example: --seed 1")
    p.add_argument("--distribute", choices=("none", "auto", "data-parallel"),
                   help="devices: none (one), auto (data-parallel over several local accelerators), data-parallel "
                        "(every local device; --set replicas=N for N); --batch-size is the global batch. Example: --distribute auto")
    p.add_argument("--log-root", default=LOG_ROOT, help="root of default run directories (default: tensorboard_logs)")


TUNE_EPILOG = """examples:
  python cli.py tune --task classification --trials 8 --epochs 2
  python cli.py tune --task classification --space "learning_rate=loguniform(1e-4,3e-3)" \\
      --space "model=choice(cnn,resnet)" --space "dropout=uniform(0,0.5)" --trials 20 --timeout 900
  python cli.py tune --task classification --backends tensorflow,jax --trials 10 --epochs 2
  python cli.py tune --resume tensorboard_logs/tune/classification/20261206-120000-jax
Each trial is a fit run directory in the study folder; the objective is the task's main validation
metric (never test). The study folder also holds study.db (resume), results.md, best.json
(the best config as --set flags), tune.png and hparams/ (TensorBoard HParams).
"""


def tune_pruners() -> tuple[str, ...]:
    return ("median", "halving", "none")  # training.tune.PRUNERS (not imported here: it imports optuna)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cli.py", description=__doc__.split("\n\n")[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("tasks", help="list registered tasks: default data, model, metrics, presets")
    _common(p)
    p.add_argument("--task", help="also list every config key of this task. Example: --task classification")

    p = sub.add_parser("fit", help="train a task", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    _fit_flags(p)
    p.add_argument("--run-dir", help="where to write the run (default: tensorboard_logs/<task>/<time>-<backend>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint, same config and backend")
    p.add_argument("--init-weights", metavar="FILE", help="start from these weights (a .weights.h5 of the same model)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per epoch)")

    p = sub.add_parser("compare", help="train one task on each backend (and jit mode) and report side by side",
                       epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    _fit_flags(p)
    p.add_argument("--backends", default="tensorflow,jax", help="comma-separated backends (default tensorflow,jax)")
    p.add_argument("--jit", default="on", help="on, off or on,off: XLA-compiled train step or not (default on)")
    p.add_argument("--devices", help="scaling report: one data-parallel run per replica count, same global batch "
                   "(simulated CPU devices without accelerators). Example: --devices 1,2,4")
    p.add_argument("--out", help="report folder (default: tensorboard_logs/compare/<task>/<time>)")

    p = sub.add_parser("tune", help="hyperparameter search (Optuna): trials of fit, pruned early, best config as --set flags",
                       epilog=TUNE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    _fit_flags(p)
    p.add_argument("--space", action="append", default=[], metavar="KEY=DIST(...)",
                   help="a searched config key (repeatable): loguniform(lo,hi), uniform(lo,hi), int(lo,hi), "
                        "logint(lo,hi) or choice(a,b,...) (default: learning rate, model, dropout where the task has them). "
                        'Example: --space "learning_rate=loguniform(1e-4,3e-3)"')
    p.add_argument("--trials", type=int, help="finished trials to reach, trial 0 being the default config (default 20). Example: --trials 8")
    p.add_argument("--timeout", type=float, help="start no new trial after this many seconds. Example: --timeout 600")
    p.add_argument("--pruner", choices=tune_pruners(), default="median",
                   help="stop unpromising trials after an epoch: median, halving (successive halving) or none (default median)")
    p.add_argument("--backends", help="search the backend too, each trial in its own process. Example: --backends tensorflow,jax")
    p.add_argument("--out", help="study folder (default: tensorboard_logs/tune/<task>/<time>-<backend>)")
    p.add_argument("--resume", metavar="STUDY", help="continue a stopped or killed study (its folder); --trials raises its target")

    p = sub.add_parser("tune-trial")  # internal: one trial of a stored study, started by `tune --backends`
    _common(p)
    p.add_argument("--study", required=True)
    p.add_argument("--trial", type=int, required=True)

    p = sub.add_parser("evaluate", help="evaluate a run's checkpoint on a split")
    _common(p)
    p.add_argument("--run-dir", required=True, help="a run directory written by fit")
    p.add_argument("--task", help="task name (default: read from the run)")
    p.add_argument("--split", default=None, choices=("train", "validation", "test", "all"),
                   help="which split: train, validation, test or all of them (default: validation; with --data, all)")
    p.add_argument("--checkpoint", default="final", choices=("final", "best", "last"),
                   help="final model.keras, best or last checkpoint (default final)")
    p.add_argument("--data", help="evaluate on other data than the run's (same format as fit --data); "
                   "all of its examples unless --split is given")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a predict-time config key of the run, as predict --set does (e.g. decoding length "
                        "for summarization; repeatable). Example: --set min_decode_length=4")

    p = sub.add_parser("predict", help="task outputs for given inputs (files, or text for text tasks)")
    _common(p)
    p.add_argument("--run-dir", required=True, help="a run directory written by fit")
    p.add_argument("--task", help="task name (default: read from the run)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/predictions)")
    p.add_argument("--checkpoint", default="final", choices=("final", "best", "last"),
                   help="final model.keras, best or last checkpoint (default final)")
    p.add_argument("--input", metavar="FILE", help="read more inputs from FILE, one per line (e.g. texts)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a predict-time config key of the run (the task's, e.g. beam_size for translation; "
                        "repeatable). Example: --set beam_size=4")
    p.add_argument("--context", metavar="FILE", help="question answering: the text the questions are about")
    p.add_argument("--num-samples", type=int, default=16, help="samples to generate (generative tasks). Example: --num-samples 64")
    p.add_argument("--user", help="recommendation: a user id to recommend for (same as giving it as an input)")
    p.add_argument("--item", help="recommendation: predict this item's rating (score) for the user(s) instead of a top-k")
    p.add_argument("--k", type=int, help="recommendation: how many items to recommend (default: the run's k)")
    p.add_argument("--frames", metavar="FOLDER", help="tracking: a folder of video frames to track through. Example: --frames clip/img")
    p.add_argument("--box", metavar="X,Y,W,H", help="tracking: the object's box in the first frame (pixels, 1-based x,y as in "
                   "OTB files). Example: --box 205,151,17,50")
    p.add_argument("--artifact", metavar="PATH", help="predict with an exported artifact (SavedModel folder, .onnx, .tflite, "
                   ".xml) of this run instead of its Keras model. Example: --artifact RUN/export/onnx/model.onnx")
    p.add_argument("inputs", nargs="*", help="input files (images), strings or folders (tracking sequences), per task")

    p = sub.add_parser("export", help="write a deployable artifact of a run and check it predicts what the run's model does",
                       epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--run-dir", required=True, help="a run directory written by fit (trained on either backend)")
    p.add_argument("--task", help="task name (default: read from the run)")
    p.add_argument("--format", required=True, help="saved_model | onnx | litert | openvino. Example: --format onnx")
    p.add_argument("--checkpoint", default="final", choices=("final", "best", "last"),
                   help="final model.keras, best or last checkpoint (default final)")
    p.add_argument("--out", help="artifact folder (default: RUN_DIR/export/<format>[-<quantize>])")
    p.add_argument("--quantize", default="none", help="none | dynamic | float16 (litert; onnx: dynamic). Example: --quantize dynamic")
    p.add_argument("--batches", type=int, default=4, help="validation batches the parity check runs (default 4)")
    p.add_argument("--no-backend-check", action="store_true",
                   help="skip comparing with the model on the backend the run was trained on (a fresh process)")

    p = sub.add_parser("tensorboard", help="start TensorBoard on the log root and print its URL")
    _common(p)
    p.add_argument("--logdir", default=LOG_ROOT, help="log root (default: tensorboard_logs)")
    p.add_argument("--port", type=int, default=6006)
    p.add_argument("--host", default="localhost")

    return parser


def _run_backend(args) -> str:
    """The backend to run: --backend, else the resumed/evaluated run's, else $KERAS_BACKEND."""
    saved = None
    run_dir = getattr(args, "resume", None) or (getattr(args, "run_dir", None) if args.command in ("evaluate", "predict") else None)
    if run_dir and (Path(run_dir) / "config.json").is_file():
        try:
            saved = json.loads((Path(run_dir) / "config.json").read_text()).get("backend")
        except json.JSONDecodeError:
            saved = None
    if args.command == "tune" and args.resume and (Path(args.resume) / "study.json").is_file():
        study_backend = json.loads((Path(args.resume) / "study.json").read_text()).get("backend")
        if args.backend and study_backend and args.backend != study_backend:
            raise UserError(f"--backend {args.backend}: the study in {args.resume} runs on {study_backend}")
        return study_backend or args.backend or "tensorflow"
    if args.command == "fit" and args.resume and saved and args.backend and args.backend != saved:
        raise UserError(f"--backend {args.backend}: the run in {args.resume} was trained on {saved}; resume it on {saved}")
    if args.backend == "auto":
        raise UserError("--backend auto: a resumed run keeps the backend it was trained on" if args.command == "fit" else
                        f"--backend auto: only fit chooses its backend by probing; give tensorflow or jax to {args.command}")
    if args.command == "export":
        return "tensorflow"  # the exporters are TensorFlow tools; any run's weights load there
    return args.backend or (saved if args.command == "fit" and args.resume else None) or \
        os.environ.get("KERAS_BACKEND") or "tensorflow"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        from training import commands  # imports no keras: commands call start() once their arguments are checked
        from training.backend import select_backend

        return commands.COMMANDS[args.command](args, lambda: select_backend(_run_backend(args), args.verbose))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (one line for the user's errors, traceback for ours)
        code = getattr(exc, "exit_code", None)
        if code is None or args.debug:
            traceback.print_exc()
            return code or 1
        print(f"error: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
