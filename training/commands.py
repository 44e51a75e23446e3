"""What each CLI subcommand does.

Each command first checks its arguments, finds the task and resolves the config, importing no
keras, TensorFlow or JAX: `tasks` and every argument or config error answer at once. Only then
does it call `start()`, which selects the backend and imports keras (see cli.py).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Callable

from errors import UserError
from pipelines.data import parse_data_spec
from tasks.base import all_tasks, describe_config, get_task, parse_overrides, predict_overrides, resolve_config
from training import checkpoints, compile_cache, rundir, runlock

Start = Callable[[], str]  # selects the backend, imports keras, returns the backend's name


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def cmd_tasks(args, start: Start) -> int:
    rows = []
    for task in all_tasks():
        cfg = resolve_config(task)
        from tasks.base import config_fields

        choices = config_fields(task.config_cls)["model"].metadata.get("choices") or (cfg.model,)
        rows.append([task.name, task.default_data, " | ".join(choices), task.best_metric.removeprefix("val_"),
                     ", ".join(sorted(task.presets)) or "-"])
    print(_table(rows, ["task", "default data", "models (--set model=)", "main metric", "presets"]))
    if args.task:
        task = get_task(args.task)
        print(f"\nconfig keys of {task.name} (--set KEY=VALUE):")
        print(_table([[n, t, repr(d), h] for n, t, d, h in describe_config(task.config_cls)],
                     ["key", "type", "default", "meaning"]))
    return 0


FLAG_KEYS = {"data": "data", "epochs": "epochs", "batch_size": "batch_size", "seed": "seed", "distribute": "distribute"}


def _flags(args) -> dict:
    flags = {key: getattr(args, attr) for attr, key in FLAG_KEYS.items() if getattr(args, attr) is not None}
    if args.no_jit:
        flags["jit_compile"] = False
    return flags


def cmd_fit(args, start: Start) -> int:
    if args.resume:
        return _resume(args, start)
    if not args.task:
        raise UserError("fit: --task is required (see `python cli.py tasks`)")
    task = get_task(args.task)
    cfg = resolve_config(task, args.preset, _flags(args), args.set)
    parse_data_spec(cfg.data)  # a mistyped --data path is answered before the backend starts
    init = Path(args.init_weights) if args.init_weights else None
    if init is not None and not init.is_file():
        raise UserError(f"--init-weights {init}: no such file")
    compile_cache.configure_all(cfg.compile_cache)  # before the backend's first compilation
    auto = _auto_backend(args, task, cfg)
    with contextlib.ExitStack() as lock:
        if args.run_dir:  # locked before the backend starts: a second writer is answered at once
            lock.enter_context(runlock.held(Path(args.run_dir)))
        backend = start()
        from training.loop import fit

        run_dir = Path(args.run_dir) if args.run_dir else rundir.default_run_dir(args.log_root, task.name, backend)
        if not args.run_dir:  # a new default folder (named by time and backend) is locked once it is known
            lock.enter_context(runlock.held(run_dir))
        print(f"fit {task.name} on {backend} (jit_compile={cfg.jit_compile}) -> {run_dir}", flush=True)
        result = fit(task, cfg, run_dir, initial_weights=init, verbose=2 if args.quiet else "auto")
        if auto is not None:
            result.metrics["backend_auto"] = auto
            rundir.write_json(run_dir / rundir.METRICS, result.metrics)
    _print_outcome(result.run_dir, result.metrics)
    return 0


def _auto_backend(args, task, cfg) -> dict | None:
    """--backend auto: probe both backends (or reuse the cached decision) and run on the faster."""
    if getattr(args, "backend", None) != "auto":
        return None
    from training import auto_backend

    root = compile_cache.resolve_root(cfg.compile_cache) or compile_cache.default_root()
    decision = auto_backend.choose(task.name, cfg.to_dict(), root / auto_backend.CACHE_FILE)
    args.backend = decision["backend"]
    return decision


def _resume(args, start: Start) -> int:
    run_dir = rundir.require_run(Path(args.resume))
    saved = rundir.read_json(run_dir / rundir.CONFIG)
    task = get_task(args.task or saved["task"])
    compile_cache.configure_all(saved.get("config", {}).get("compile_cache", compile_cache.DEFAULT))
    with runlock.held(run_dir, "--resume"):
        return _resume_locked(args, start, run_dir, task)


def _resume_locked(args, start: Start, run_dir: Path, task) -> int:
    backend = start()
    from training.loop import fit, load_run_config

    cfg, _ = load_run_config(task, run_dir)
    asked = resolve_config(task, args.preset, _flags(args), args.set) if (args.preset or args.set or _flags(args)) else None
    if asked is not None:
        conflicts = [k for k, v in asked.to_dict().items()
                     if v != cfg.to_dict()[k] and (k in _flags(args) or any(s.startswith(k + "=") for s in args.set)
                                                  or (args.preset and k in task.presets.get(args.preset, {})))]
        if conflicts:
            raise UserError(f"--resume {run_dir}: {', '.join(conflicts)} differ(s) from the run's config; "
                            "a resumed run keeps its config (start a new run to change it)")
    ckpt_dir = run_dir / rundir.CHECKPOINTS
    if not ckpt_dir.is_dir() or not any(ckpt_dir.glob("*.json")):
        raise UserError(f"--resume {run_dir}: no checkpoint yet (the run stopped before its first checkpoint)")
    latest, note = checkpoints.resume_point(ckpt_dir)
    finished = rundir.read_json(run_dir / rundir.METRICS) if (run_dir / rundir.METRICS).exists() else None
    if finished is not None and (latest["epoch"] >= cfg.epochs or finished.get("early_stopped")):
        stopped = finished.get("early_stopped")
        print(f"{run_dir}: already finished "
              + (f"(stopped early after epoch {stopped['epoch']})" if stopped else f"all {cfg.epochs} epochs"))
        _print_outcome(run_dir, finished)
        return 0
    if note:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    print(f"resume {task.name} on {backend} from step {latest['global_step']} "
          f"(epoch {latest['epoch'] + 1}/{cfg.epochs}) -> {run_dir}", flush=True)
    result = fit(task, cfg, run_dir, resume=latest, verbose=2 if args.quiet else "auto")
    _print_outcome(result.run_dir, result.metrics)
    return 0


def _print_outcome(run_dir: Path, metrics: dict) -> None:
    val = ", ".join(f"{k} {v:.4f}" for k, v in metrics.get("validation", {}).items())
    t = metrics.get("timing", {})
    step = t.get("step_s")
    best = metrics.get("best") or {}
    print("\ndone.")
    print(f"  validation:   {val or '-'}")
    if best.get("epoch"):
        print(f"  best:         {best['metric']} {best['value']:.4f} at epoch {best['epoch']} ({best['direction']} is better)")
    test = metrics.get("test")
    if test:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float))
        print(f"  test:         {shown} ({test['checkpoint']} checkpoint, {test['examples']} examples)")
    else:
        print("  test:         - (the data has no test split)")
    if step:
        print(f"  speed:        {step * 1000:.1f} ms/step, {t['examples_per_s']:.0f} examples/s "
              f"(compile {t['compile_s']:.1f} s{_cache_note(metrics)}, wall {t['wall_s']:.0f} s)")
    print(f"  run dir:      {run_dir}")
    print(f"  metrics:      {run_dir / rundir.METRICS}")
    print(f"  model:        {run_dir / rundir.MODEL}")
    print(f"  checkpoints:  {run_dir / rundir.CHECKPOINTS}")
    print(f"  tensorboard:  python cli.py tensorboard --logdir {run_dir.parent}")


def _cache_note(metrics: dict) -> str:
    cache = (metrics.get("compile") or {}).get("cache")
    return f", cache {cache}" if cache else ""


def _task_of_run(args):
    run_dir = rundir.require_run(Path(args.run_dir))
    saved = rundir.read_json(run_dir / rundir.CONFIG)
    if args.task and args.task != saved.get("task"):
        raise UserError(f"--task {args.task}: {run_dir} holds a {saved.get('task')!r} run")
    return get_task(saved["task"]), run_dir


def cmd_evaluate(args, start: Start) -> int:
    task, run_dir = _task_of_run(args)
    if args.data:
        parse_data_spec(args.data)
    overrides = predict_overrides(task, args.set, "evaluate")
    start()
    from training.inference import evaluate

    out = evaluate(task, run_dir, split=args.split, which=args.checkpoint, data=args.data, overrides=overrides)
    used = out["examples"]
    parts = ", ".join(f"{k} {v}" for k, v in used.get("parts", {}).items())
    print(f"{task.name} on {out['data']}, split {out['split']}: {used['count']} examples "
          f"({parts or used.get('origin', '')}); {args.checkpoint} weights, {out['backend']}")
    for k, v in out["metrics"].items():
        print(f"  {k:<24} {v:.4f}")
    if overrides:
        print("  with " + " ".join(f"--set {k}={v}" for k, v in overrides.items()))
    print(f"written: {run_dir / ('eval-' + out['split'] + '.json')}")
    return 0


def cmd_predict(args, start: Start) -> int:
    task, run_dir = _task_of_run(args)
    inputs = list(args.inputs)
    if args.input:
        try:
            inputs += [line.rstrip("\n") for line in Path(args.input).read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--input {args.input}: cannot read ({exc.__class__.__name__})") from None
    if args.num_samples < 1:
        raise UserError(f"--num-samples {args.num_samples}: expected a positive int")
    if args.k is not None and args.k < 1:
        raise UserError(f"--k {args.k}: expected a positive int")
    inputs += [args.user] if args.user else []
    overrides = predict_overrides(task, args.set)
    options = {"num_samples": args.num_samples, "item": args.item, "k": args.k, "input": args.input,
               "context": args.context}
    if args.artifact and not Path(args.artifact).exists():
        raise UserError(f"--artifact {args.artifact}: no such file or folder")
    if args.frames:
        inputs.append(args.frames)
    if args.box is not None:
        from pipelines.sequences import parse_box  # numpy only

        options["box"] = parse_box(args.box, "--box").tolist()
    start()
    from training.inference import predict

    rows, out_dir = predict(task, run_dir, inputs, out_dir=args.out, which=args.checkpoint, options=options,
                            artifact=args.artifact, overrides=overrides)
    for row in rows:
        print(json.dumps(row))
    print(f"written: {out_dir}")
    return 0


def cmd_export(args, start: Start) -> int:
    from training.export import ExportRequest, check_request  # imports no keras

    task, run_dir = _task_of_run(args)
    if args.backend not in (None, "tensorflow"):
        raise UserError(f"--backend {args.backend}: export runs on tensorflow (the exporters are TensorFlow tools); "
                        "a run trained on jax exports as it is, and is checked against jax")
    req = ExportRequest(str(run_dir), args.format, args.checkpoint, args.out, args.quantize, args.batches,
                        backend_check=not args.no_backend_check)
    check_request(task, req)
    start()
    from training.export import export_run

    export_run(task, req)
    return 0


def cmd_tensorboard(args, start: Start) -> int:
    from training.backend import start_up_logs_hidden, wants_start_up_logs

    with start_up_logs_hidden(not wants_start_up_logs(args.verbose)):  # tensorboard imports TensorFlow
        from tensorboard import program

    Path(args.logdir).mkdir(parents=True, exist_ok=True)
    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", str(args.logdir), "--port", str(args.port), "--host", args.host])
    url = tb.launch()
    print(f"TensorBoard {url} (logdir {args.logdir}); Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def _fit_args(args) -> list[str]:
    """The fit flags given to compare, passed on verbatim to every run."""
    out = ["--task", args.task]
    for flag, value in (("--data", args.data), ("--epochs", args.epochs), ("--batch-size", args.batch_size),
                        ("--preset", args.preset), ("--seed", args.seed), ("--distribute", args.distribute)):
        if value is not None:
            out += [flag, str(value)]
    for pair in args.set:
        out += ["--set", pair]
    return out + (["--verbose"] if args.verbose else [])


def cmd_compare(args, start: Start) -> int:
    from training.compare import compare, parse_variants  # imports no keras until compare() runs

    if not args.task:
        raise UserError("compare: --task is required (see `python cli.py tasks`)")
    if args.no_jit:
        raise UserError("compare: use --jit off (or on,off) instead of --no-jit")
    task = get_task(args.task)
    cfg = resolve_config(task, args.preset, _flags(args), args.set)  # validates everything up front
    variants = parse_variants(args.backends, args.jit, args.devices)
    out = Path(args.out) if args.out else Path(args.log_root) / "compare" / task.name / time.strftime("%Y%m%d-%H%M%S")
    start()  # this process builds the initial weights every run starts from
    report = compare(task, cfg, _fit_args(args), variants, out)
    failed = [r["name"] for r in report["runs"] if r.get("status") != "ok"]
    return 1 if failed and len(failed) == len(report["runs"]) else 0


def cmd_tune(args, start: Start) -> int:
    from training import tune  # optuna; no keras until start()

    if args.resume:
        settings, study_dir = _resumed_study(args, tune)
        start()
        study = tune.load_study(study_dir, settings, seed=settings.base_config().seed)
        tune.recover(study)
    else:
        settings, study_dir = _new_study(args, tune)
        settings.backend = start()
        from training.tune_trial import objective_metric

        settings.metric, settings.minimise = objective_metric(get_task(settings.task), settings.base_config())
        study = tune.create_study(study_dir, settings)
    done = len(tune.counted(study))
    print(f"tune {settings.task} on {', '.join(settings.backends) or settings.backend}: {settings.metric} "
          f"({'down' if settings.minimise else 'up'} is better), trials {done}/{settings.trials} done, "
          f"pruner {settings.pruner} -> {study_dir}", flush=True)
    print(f"  space: {'  '.join(settings.space)}", flush=True)
    tune.run_study(study_dir, settings, study)
    return 0


def _new_study(args, tune):
    """Settings of a new study, every flag and the whole space checked before any backend starts."""
    from training import backend as backend_mod
    from training.search_space import default_space, parse_space

    if not args.task:
        raise UserError("tune: --task is required (see `python cli.py tasks`)")
    task = get_task(args.task)
    flags = _flags(args)
    cfg = resolve_config(task, args.preset, flags, args.set)
    parse_data_spec(cfg.data)
    specs = args.space or default_space(cfg)
    fixed = set(flags) | set(parse_overrides(args.set))
    parse_space(specs, cfg, fixed=sorted(fixed))
    backends = []
    if args.backends:
        if getattr(args, "backend", None):
            raise UserError("tune: give --backend (every trial on one backend) or --backends (backend searched), not both")
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = [b for b in backends if b not in backend_mod.BACKENDS]
        if unknown or len(set(backends)) < 2:
            raise UserError(f"--backends {args.backends}: expected two or more of {', '.join(backend_mod.BACKENDS)}")
    _check_budget(args)
    backend = getattr(args, "backend", None) or backend_mod.default_backend()  # what start() will select
    stamp = time.strftime("%Y%m%d-%H%M%S")
    study_dir = Path(args.out) if args.out else \
        Path(args.log_root) / "tune" / task.name / f"{stamp}-{'-'.join(backends) or backend}"
    settings = tune.Settings(task=task.name, space=specs, trials=args.trials or 20, preset=args.preset,
                             flags=flags, sets=list(args.set), backend=backend, backends=backends,
                             pruner=args.pruner, timeout=args.timeout)
    return settings, study_dir


def _resumed_study(args, tune):
    """The stored study's settings; only --trials and --timeout may change on resume."""
    study_dir = Path(args.resume)
    settings = tune.read_settings(study_dir)
    given = [f for f, v in (("--task", args.task and args.task != settings.task), ("--space", args.space),
                            ("--set", args.set), ("--preset", args.preset), ("--backends", args.backends),
                            ("--out", args.out)) if v] + [f"--{k.replace('_', '-')}" for k in _flags(args)]
    if given:
        raise UserError(f"--resume {study_dir}: {', '.join(given)} cannot change a stored study "
                        "(only --trials and --timeout can); start a new study to search another space")
    _check_budget(args)
    if args.trials:
        settings.trials = args.trials
    settings.timeout = args.timeout
    return settings, study_dir


def _check_budget(args) -> None:
    if args.trials is not None and args.trials < 1:
        raise UserError(f"--trials {args.trials}: expected a positive int")
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout {args.timeout}: expected seconds > 0")


def cmd_tune_trial(args, start: Start) -> int:
    """Internal: one trial of a stored study in this process (tune starts it per trial with --backends)."""
    start()
    from training.tune_trial import run_stored_trial

    run_stored_trial(Path(args.study), args.trial)
    return 0


COMMANDS = {"compare": cmd_compare, "tune": cmd_tune, "tune-trial": cmd_tune_trial, "tasks": cmd_tasks, "fit": cmd_fit,
            "evaluate": cmd_evaluate, "predict": cmd_predict, "tensorboard": cmd_tensorboard, "export": cmd_export}
