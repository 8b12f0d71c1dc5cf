"""Soft-IntroVAE on 8×8 digits (large ELBOs, tiny exp(-2s·ELBO) weights): training time with
subnormal floats computed, flushed in the training thread only (genvae.train), and flushed in the
whole process (genvae train). Each mode trains in its own process, all in this one run.

    .venv/bin/python benchmarks/denormals.py --steps 100

Prints the seconds of each and the ratio of each to the unflushed one; the losses logged at the
last step, which flushing must leave unchanged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = """
import contextlib, json, sys, torch
import numpy as np
from sklearn.datasets import load_digits
import genvae
import genvae.core.trainer as trainer

mode, steps, run = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "process":
    torch.set_flush_denormal(True)  # before any torch work: the worker threads take it too
elif mode == "off":
    trainer.denormals_flushed = contextlib.nullcontext
digits = load_digits()
result = genvae.train(run, data=(digits.images / 16.0, digits.target), steps=steps,
                      settings={"data.test_fraction": 0.1, "train.figures_every": 0})
last = {k: round(v, 4) for k, v in result.last_logs.items() if k in ("rec", "kl")}
print(json.dumps({"seconds": result.seconds, "last": last}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("off", "thread", "process"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.steps), f"{tmp}/{mode}"],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            times[mode] = result["seconds"]
            print(f"{mode:8s} {result['seconds']:7.1f} s  last log {result['last']}")
    for mode in ("thread", "process"):
        print(f"speed-up, flushed in {mode}: {times['off'] / times[mode]:.2f}x")


if __name__ == "__main__":
    main()
