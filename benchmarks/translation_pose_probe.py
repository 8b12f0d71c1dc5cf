"""Pose R² (genvae.translate.pose_probe) of finished translation runs, as `genvae eval translation
RUN --seed SEED` reports it, without the rest of that evaluation:

    python benchmarks/translation_pose_probe.py runs/tr/runs/vae@0 runs/tr/runs/soft-intro@0
"""

import sys

import torch

from genvae.core.run import load_run
from genvae.plugins.metrics.translation import PROBE_SEED
from genvae.translate import pose_probe

torch.set_num_threads(1)
for spec in sys.argv[1:]:
    path, _, seed = spec.partition("@")
    run = load_run(path)
    r = pose_probe(run.models, run.data, seed=int(seed or 0) + PROBE_SEED)
    print(f"{path} seed {seed or 0}: class / content R², rotation {r['class']['rotation']:.2f} / {r['content']['rotation']:.2f}; "
          f"position {r['class']['position']:.2f} / {r['content']['position']:.2f}")
