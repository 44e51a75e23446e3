#!/usr/bin/env python
"""Decoded tokens per second of the seq2seq decoding (greedy and beam), per backend, side by side.

Each backend runs in its own subprocess on the translation task's default Transformer (random
weights unless --run-dir gives a trained run, whose sources are then real validation sentences):
the first call (tracing + XLA compilation of the encoder and the step network) is reported
alone; then `--repeats` timed calls decode `--examples` sources of `--length` tokens.
Tokens counted = output positions decoded (batch x steps actually run).

  python benchmarks/decode_speed.py [--backends tensorflow,jax] [--beams 1,4] [--examples 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(args) -> dict:
    import numpy as np

    from keras_models import seq2seq as models

    rng = np.random.default_rng(0)
    model = models.build("transformer", 1000, 1000, args.length, args.length, width=64, hidden=128, num_heads=4,
                         num_layers=2, dropout=0.0)
    source = rng.integers(4, 1000, (args.examples, args.length)).astype("int32")
    out = {}
    for beam in [int(b) for b in args.beams.split(",")]:
        parts = models.decoder_parts(model)
        start = time.perf_counter()
        models.decode(model, source[:8], beam_size=beam, parts=parts, batch_size=8 * beam)
        first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ids, _ = models.decode(model, source, beam_size=beam, parts=parts, batch_size=args.examples * beam)
            times.append(time.perf_counter() - start)
        steps = ids.shape[1]
        best = min(times)
        out[f"beam{beam}"] = {"first_call_s": round(first, 2), "decode_s": round(best, 3),
                              "tokens_per_s": round(args.examples * steps / best, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--beams", default="1,4")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--child", "--beams", args.beams, "--examples", str(args.examples),
               "--length", str(args.length), "--repeats", str(args.repeats)]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode:
            print(f"{backend}: failed\n{proc.stderr[-2000:]}")
            continue
        for beam, r in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            print(f"{backend:<11} {beam:<6} {r['tokens_per_s']:>10.1f} tokens/s  (decode {r['decode_s']} s, "
                  f"first call {r['first_call_s']} s)")


if __name__ == "__main__":
    main()
