#!/bin/bash
# The 2-D suite at the paper's schedule on one GPU: Table 2 (its missing cells, 12 at once), the
# stability bench of Figure 3 (its two batched models as two processes) and the collapse bench of
# Figure 21, all at the same time. One process's step is launch-bound (docs/results.md, "On one
# GPU"), so CUDA MPS is started where available to let the processes' kernels share the GPU.
# Finished cells are kept (Table 2's in the repository); a rerun continues the rest.
#
#   bash benchmarks/gpu_2d_suite.sh            # logs in runs/gpu-2d/*.log
set -u
STEPS=${STEPS:-30000}; OUT=${OUT:-runs/gpu-2d}; GENVAE=${GENVAE:-genvae}
mkdir -p "$OUT"
if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d 2>/dev/null; then
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
fi
export OMP_NUM_THREADS=1
$GENVAE bench table2 --out docs/results/table2/paper --steps "$STEPS" --seeds 5 --jobs 12 --device cuda > "$OUT/table2.log" 2>&1 &
for model in intro soft-intro; do
  $GENVAE bench stability --out "$OUT/stability" --steps "$STEPS" --seeds 5 --model $model --device cuda > "$OUT/stability-$model.log" 2>&1 &
done
$GENVAE bench collapse --out "$OUT/collapse" --steps "$STEPS" --device cuda > "$OUT/collapse.log" 2>&1 &
wait
tail -n 3 "$OUT"/*.log
