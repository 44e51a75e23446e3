"""`python tests/stop_at_step.py STEP MARKER cli-args...`: cli.py that freezes after global step STEP.

It writes MARKER and then sleeps, so a test can act while the run holds its run directory (start a
second writer) and then kill it with SIGKILL at a known step: a real kill -9, at a reproducible
place (in the middle of an epoch, some steps after the last checkpoint).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import callbacks  # noqa: E402  (imports keras: KERAS_BACKEND comes from the environment)

STEP, MARKER, ARGV = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
_original = callbacks.Checkpointer.on_train_batch_end


def _freeze_after(self, batch, logs=None):
    _original(self, batch, logs)
    if self._global_step() >= STEP:
        MARKER.write_text(str(self._global_step()))
        time.sleep(600)  # until the test kills this process


callbacks.Checkpointer.on_train_batch_end = _freeze_after

import cli  # noqa: E402

sys.exit(cli.main(ARGV))
