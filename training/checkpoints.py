"""Which checkpoint a resume starts from, and whether a weights file belongs to a model.

Every checkpoint `step-N.weights.h5` has a record `step-N.json` (the same fields as `latest.json`:
step, epoch, position in the epoch, best so far, and the weights file's size and SHA-256). After a
crash of the machine the newest files may be truncated or corrupt even though they were renamed
into place; `resume_point` checks the newest record against its file and falls back to the newest
intact one. Imports no keras (it answers before the backend starts).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from errors import UserError

LATEST = "latest.json"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def digest(path: Path) -> dict:
    """Size and SHA-256 of a file, as recorded next to each checkpoint."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": h.hexdigest()}


def record_name(weights_name: str) -> str:
    return weights_name.removesuffix(".weights.h5") + ".json"


def problem_with(ckpt_dir: Path, state: dict) -> str | None:
    """Why the checkpoint a record names cannot be used, or None when it is intact."""
    path = ckpt_dir / str(state.get("weights", ""))
    if not state.get("weights") or not path.is_file():
        return f"{path}: missing"
    size = path.stat().st_size
    if "bytes" in state and size != state["bytes"]:
        return f"{path}: truncated or damaged ({size} bytes on disk, {state['bytes']} written)"
    if "sha256" in state:
        if digest(path)["sha256"] != state["sha256"]:
            return f"{path}: corrupt (its SHA-256 differs from the one recorded when it was written)"
    else:  # a record from before checksums: at least the file must look like HDF5
        with open(path, "rb") as f:
            if f.read(8) != HDF5_SIGNATURE:
                return f"{path}: not an HDF5 file"
    return None


def _read_record(path: Path) -> tuple[dict | None, str | None]:
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"{path}: missing"
    except (OSError, ValueError) as exc:
        return None, f"{path}: damaged ({exc.__class__.__name__})"
    if not isinstance(state, dict) or not {"weights", "global_step", "epoch", "step_in_epoch"} <= state.keys():
        return None, f"{path}: damaged (fields missing)"
    return state, None


def _records_newest_first(ckpt_dir: Path) -> list[Path]:
    return sorted(ckpt_dir.glob("step-*.json"), reverse=True)


def resume_point(ckpt_dir: Path, flag: str = "--resume") -> tuple[dict, str | None]:
    """The newest intact checkpoint's record, and a one-line note when it is not `latest.json`'s."""
    latest, problem = _read_record(ckpt_dir / LATEST)
    candidates = [latest] if latest is not None else []
    for path in _records_newest_first(ckpt_dir):
        state, _ = _read_record(path)
        if state is not None and (latest is None or state["global_step"] < latest["global_step"]):
            candidates.append(state)
    first_problem = problem
    for state in candidates:
        problem = problem_with(ckpt_dir, state)
        if problem is None:
            note = None if first_problem is None else (
                f"{first_problem}; resuming from the newest intact checkpoint, {state['weights']} "
                f"(step {state['global_step']})")
            return state, note
        first_problem = first_problem or problem
    raise UserError(f"{flag} {ckpt_dir.parent}: no intact checkpoint in {ckpt_dir} ({first_problem})")


def weights_layout(path: Path) -> dict[str, tuple]:
    """{variable path: shape} of a Keras .weights.h5 file (read with h5py: no objects, no code)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, tuple(obj.shape)) if isinstance(obj, h5py.Dataset) else None)
    return out


def layout_mismatch(theirs: dict, ours: dict, with_optimizer: bool) -> str | None:
    """The first difference between a file's variables and this model's, in words (None: they fit)."""
    keep = (lambda k: True) if with_optimizer else (lambda k: not k.startswith("optimizer/"))
    theirs = {k: v for k, v in theirs.items() if keep(k)}
    ours = {k: v for k, v in ours.items() if keep(k)}
    for key in sorted(ours):
        if key not in theirs:
            return f"it has no {key} (this model's {ours[key]})"
        if theirs[key] != ours[key]:
            return f"{key} is {theirs[key]} in the file, {ours[key]} in this model"
    extra = sorted(theirs.keys() - ours.keys())
    return f"it has {extra[0]}, which this model lacks" if extra else None
