"""Run the whole test suite once per backend, both at the same time (the README's test command).

Each suite is mostly one busy core (Python, XLA compilation, small tensors), so on a 2-core CI
machine running the TensorFlow and JAX suites side by side takes about the time of the slower one
instead of the sum. Each suite's output is kept whole and printed when it finishes; the exit status
is non-zero if either fails. Extra arguments go to both pytest runs, e.g. `-k contract -x`.
One backend alone stays what it always was: `KERAS_BACKEND=jax python -m pytest -q`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax")


def start_suite(backend: str, args: list[str], log):
    env = dict(os.environ, KERAS_BACKEND=backend)
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", *args], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def main(args: list[str]) -> int:
    start = time.perf_counter()
    logs = {b: tempfile.TemporaryFile(mode="w+") for b in BACKENDS}
    running = {b: start_suite(b, args, logs[b]) for b in BACKENDS}
    codes, took = {}, {}
    try:
        while running:
            for backend, proc in list(running.items()):
                if proc.poll() is None:
                    continue
                codes[backend], took[backend] = proc.returncode, time.perf_counter() - start
                del running[backend]
                logs[backend].seek(0)
                print(f"===== KERAS_BACKEND={backend} (exit {proc.returncode}, {took[backend]:.0f}s) =====", flush=True)
                print(logs[backend].read(), flush=True)
            time.sleep(1)
    except KeyboardInterrupt:
        for proc in running.values():
            proc.terminate()
        raise
    summary = ", ".join(f"{b}: {'passed' if codes[b] == 0 else f'FAILED (exit {codes[b]})'} in {took[b]:.0f}s"
                        for b in BACKENDS)
    print(f"both backends: {summary}; wall {time.perf_counter() - start:.0f}s")
    return max(codes.values())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
