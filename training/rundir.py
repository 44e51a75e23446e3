"""The run directory contract: what every run writes, written atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from errors import DiskFullError, UserError

CONFIG = "config.json"
METRICS = "metrics.json"
DATA_INFO = "data_info.json"
HISTORY = "history.json"
MODEL = "model.keras"
CHECKPOINTS = "checkpoints"


def default_run_dir(log_root: str | Path, task: str, backend: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(log_root) / task / f"{stamp}-{backend}"
    run_dir, n = base, 1
    while run_dir.exists():
        run_dir = base.with_name(f"{base.name}-{n}")
        n += 1
    return run_dir


def prepare_run_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--run-dir {path}: not writable ({exc.strerror or exc})") from None
    return path


def fsync_file(path: Path) -> None:
    """Push a file's bytes to the disk: a rename published after this never names half a file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (it lives in the directory's own data)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


def publish(tmp: Path, path: Path) -> None:
    """fsync the finished temporary file, rename it over `path`, fsync the folder: complete on disk."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "No space left on device" in str(exc))


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@contextlib.contextmanager
def disk_full_is_an_error(path: Path, needed_bytes: int | None = None, then: str = ""):
    """ENOSPC/EDQUOT while writing `path` becomes one line naming the path and the space needed."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        try:
            free = human_bytes(shutil.disk_usage(Path(path).parent).free)
        except OSError:
            free = "unknown"
        need = f"it needs about {human_bytes(needed_bytes)}, " if needed_bytes else ""
        raise DiskFullError(f"no space left on device writing {path}: {need}{free} free there"
                            + (f"; {then}" if then else "")) from None


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing (is this a run directory?)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def save_keras_atomically(model, path: Path, weights_only: bool = False) -> None:
    """model.save / save_weights to a temporary name, fsync, then rename over the target."""
    suffix = ".weights.h5" if weights_only else ".keras"
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name.removesuffix(suffix)}{suffix}")
    try:
        if weights_only:
            model.save_weights(tmp)
        else:
            model.save(tmp)
        publish(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def require_run(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"--run-dir {run_dir}: holds no run (no {CONFIG})")
    return run_dir
