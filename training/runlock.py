"""One writer per run directory: `fit` and `fit --resume` hold `RUN_DIR/.lock` while they run.

The lock file names its holder (pid, host, the process's start time, the command). It is created
complete in one step (written to a temporary name, then hard-linked to `.lock`, which fails if
the name exists), so a reader never sees half a lock. It is removed on every exit Python sees;
after `kill -9` or a crash of the machine it stays behind and is stale once its process is gone:
same host and no process with that pid (or a pid reused by a process that started later).
A lock from another host is never judged stale, and never by age: the user removes it.
Readers (`evaluate`, `predict`, TensorBoard) take no lock. Imports no keras: a second writer is
answered before the backend starts.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from errors import UserError

LOCK = ".lock"


def _process_start(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (Linux), to tell a reused pid from its holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the "(comm)" field


def _alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    now = _process_start(pid)
    return start is None or now is None or now == start


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as held, never removed by us


def _describe(holder: dict) -> str:
    if not holder:
        return "an unreadable lock file"
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
            f"({holder.get('command', '?')})")


def _is_stale(holder: dict) -> bool:
    return bool(holder) and holder.get("host") == socket.gethostname() and \
        not _alive(int(holder.get("pid", -1)), holder.get("pid_start"))


def acquire(run_dir: Path, flag: str = "--run-dir") -> Path:
    """Take the run directory's lock or fail with one line naming its holder."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag} {run_dir}: not writable ({exc.strerror or exc})") from None
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": _process_start(os.getpid()),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(["cli.py", *sys.argv[1:]])[:200]}
    tmp = run_dir / f".lock.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(me) + "\n")
        for _ in range(3):
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                holder = _holder(path)
                if holder is None:
                    continue  # released meanwhile: try again
                if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                    break  # this process holds it already
                if not _is_stale(holder):
                    raise UserError(f"{flag} {run_dir}: in use by {_describe(holder)}; wait for it to finish, "
                                    f"or stop it (a lock of a dead process on this host is taken over)") from None
                print(f"{run_dir}: taking over the stale lock of {_describe(holder)}, which is no longer running",
                      file=sys.stderr, flush=True)
                path.unlink(missing_ok=True)
        else:
            raise UserError(f"{flag} {run_dir}: could not take {path} (another process keeps replacing it)")
    except OSError as exc:
        raise UserError(f"{flag} {run_dir}: not writable ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    atexit.register(release, path)
    return path


def release(path: Path) -> None:
    """Remove the lock if this process holds it (idempotent)."""
    holder = _holder(Path(path))
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        Path(path).unlink(missing_ok=True)


@contextlib.contextmanager
def held(run_dir: Path, flag: str = "--run-dir"):
    """The run directory's lock for the duration of a block (released however the block ends)."""
    path = acquire(run_dir, flag)
    try:
        yield path
    finally:
        release(path)
