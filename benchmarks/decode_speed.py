#!/usr/bin/env python
"""Decoded tokens per second of the seq2seq decoding, per backend: key/value-cached vs re-running the
prefix each step, greedy vs beam search, side by side.

Each backend runs in its own subprocess on the translation task's default Transformer (2+2
layers, width 64, random weights): for each (cache, beams) the first call (tracing + XLA
compilation) is reported alone; then the best of `--repeats` timed calls that decode `--examples`
sources of `--length` tokens. With random weights not every sequence ends early, so calls run all
`--length` steps. Tokens counted = sources x steps (the output positions decoded, best beam only).

  python benchmarks/decode_speed.py [--backends tensorflow,jax] [--cache off,on] [--beams 1,4] [--examples 256]
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
    parts = models.decoder_parts(model)
    for cache in args.cache.split(","):
        for beam in [int(b) for b in args.beams.split(",")]:
            run = lambda: models.decode(model, source, beam_size=beam, parts=parts,  # noqa: E731
                                        batch_size=args.examples * beam, use_cache=cache == "on")
            start = time.perf_counter()
            run()  # traces and compiles for this batch shape
            first = time.perf_counter() - start
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                ids, _ = run()
                times.append(time.perf_counter() - start)
            best = min(times)
            out[f"cache {cache}, beams {beam}"] = {"first_call_s": round(first, 2), "decode_s": round(best, 3),
                                                   "tokens_per_s": round(args.examples * ids.shape[1] / best, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--cache", default="off,on", help="key/value cache: off, on or off,on")
    parser.add_argument("--beams", default="1,4")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    print("| backend | decoding | tokens/s | decode s | first call s (compile) |\n|---|---|---|---|---|")
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--child", "--cache", args.cache, "--beams", args.beams, "--examples", str(args.examples),
               "--length", str(args.length), "--repeats", str(args.repeats)]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode:
            print(f"{backend}: failed\n{proc.stderr[-2000:]}")
            continue
        for name, r in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            print(f"| {backend} | {name} | {r['tokens_per_s']:.1f} | {r['decode_s']} | {r['first_call_s']} |", flush=True)


if __name__ == "__main__":
    main()
