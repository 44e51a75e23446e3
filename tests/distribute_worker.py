"""Run by test_distribute.py in a fresh process whose CPU is split into simulated devices
($KERAS_BASELINES_CPU_DEVICES, applied before keras starts): one tiny classification fit on one
device and one data-parallel over all of them, then the batch-size error. Prints one JSON line."""

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.backend import select_backend  # noqa: E402

SETS = ["num_train=64", "num_val=16", "num_test=8", "dropout=0.0", "epochs=1", "batch_size=32"]


def replicated_on(model) -> int:
    """How many devices hold the first kernel: the engine's own placement, not our record of it."""
    value = model.trainable_variables[0].value
    sharding = getattr(value, "sharding", None)
    if sharding is not None:  # a jax.Array
        return len(sharding.device_set)
    return len(getattr(value, "values", None) or getattr(model.trainable_variables[0]._value, "values", [value]))


def main(backend: str) -> None:
    select_backend(backend)
    from errors import UserError
    from tasks.base import get_task, resolve_config
    from training.loop import fit

    task = get_task("classification")
    out, tmp = {}, Path(tempfile.mkdtemp())
    for mode in ("none", "data-parallel"):
        cfg = resolve_config(task, "debug", {"distribute": mode}, SETS + [f"jit_compile={backend == 'jax'}"])
        result = fit(task, cfg, tmp / mode, verbose=0, evaluate_test=False)
        steps = json.loads((tmp / mode / "steps.json").read_text())
        out[mode] = {"losses": [loss for _, loss in steps["loss"]], "distribution": result.metrics["distribution"],
                     "placed_on": replicated_on(result.model), "validation": result.metrics["validation"]}
    try:
        fit(task, resolve_config(task, "debug", {"distribute": "data-parallel"}, SETS + ["batch_size=33"]),
            tmp / "bad", verbose=0)
        out["batch_error"] = None
    except UserError as exc:
        out["batch_error"] = str(exc)
    if backend == "jax":  # model parallelism: the text model's embedding table is split, not copied
        text = get_task("text-classification")
        cfg = resolve_config(text, "debug", None, ["num_train=64", "num_val=16", "num_test=8", "embedding_dim=256",
                                                   "distribute=model-parallel"])
        result = fit(text, cfg, tmp / "mp", verbose=0, evaluate_test=False)
        out["model_parallel"] = {"sharded": sorted(v.path for v in result.model.weights if _split(v)),
                                 "losses": [loss for _, loss in json.loads((tmp / "mp" / "steps.json").read_text())["loss"]]}
    print("RESULT " + json.dumps(out), flush=True)


def _split(variable) -> bool:
    """Whether each device holds only part of the variable (model-parallel), not a copy."""
    value = variable.value
    return value.sharding.shard_shape(value.shape) != tuple(value.shape)


if __name__ == "__main__":
    main(sys.argv[1])
