#!/bin/bash
# The 2-D suite at the paper's schedule on one GPU: Table 2 (its missing cells, 12 at once), the
# stability bench of Figure 3 (its two batched models as two processes) and the collapse bench of
# Figure 21, all at the same time. One process's step is launch-bound (docs/results.md, "On one
# GPU"), so CUDA MPS is started where available to let the processes' kernels share the GPU, and
# the batched steps are compiled (CUDA graphs; COMPILE= to turn off).
# Finished cells are kept (Table 2's in the repository); a rerun continues the rest from their
# last checkpoint (every 1,000 steps).
#
#   bash benchmarks/gpu_2d_suite.sh                       # logs in runs/gpu-2d/*.log
#   DEADLINE=540 PACK=$OUT/results.tgz bash benchmarks/gpu_2d_suite.sh
#
# DEADLINE (seconds) stops every bench with Ctrl-C's signal before a time limit (each keeps its
# last checkpoint); PACK writes the finished results (no training states) as one archive.
set -u
STEPS=${STEPS:-30000}; WORK=${WORK:-runs/gpu-2d}; GENVAE=${GENVAE:-genvae}
COMPILE=${COMPILE---compile}; DEADLINE=${DEADLINE:-0}; PACK=${PACK:-}
mkdir -p "$WORK"
if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d 2>/dev/null; then
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
fi
export OMP_NUM_THREADS=1
run() {  # run LOG COMMAND...: in the background, stopped by SIGINT at the deadline
  local log=$1; shift
  if [ "$DEADLINE" -gt 0 ]; then timeout -s INT -k 30 "$DEADLINE" "$@" > "$log" 2>&1 &
  else "$@" > "$log" 2>&1 & fi
}
run "$WORK/table2.log" $GENVAE bench table2 --out docs/results/table2/paper --steps "$STEPS" --seeds 5 --jobs 12 --device cuda $COMPILE
for model in intro soft-intro; do
  run "$WORK/stability-$model.log" $GENVAE bench stability --out "$WORK/stability" --steps "$STEPS" --seeds 5 --model $model --device cuda $COMPILE
done
run "$WORK/collapse.log" $GENVAE bench collapse --out "$WORK/collapse" --steps "$STEPS" --device cuda $COMPILE
wait
tail -n 3 "$WORK"/*.log
if [ -n "$PACK" ]; then
  tar czf "$PACK" --exclude=state.pt --exclude=settings.json docs/results/table2/paper "$WORK"
  ls -l "$PACK"
fi
