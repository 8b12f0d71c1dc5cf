#!/bin/bash
# One lent-GPU session in one call (the device tool: ~10 usable minutes, results only from $OUT):
#   1. compiled (CUDA graphs) vs eager batched step, same process (benchmarks/batched_compile.py),
#      and a single run's --compile vs eager (residual net on digits);
#   2. the GPU-sensitive tests;
#   3. the 2-D suite (benchmarks/gpu_2d_suite.sh) until DEADLINE, its finished results packed.
# genvae need not be installed: it runs from the working tree.
#
#   OUT=/tmp/out DEADLINE=420 bash benchmarks/gpu_session.sh
set -u
OUT=${OUT:-runs/gpu-session}; DEADLINE=${DEADLINE:-420}
mkdir -p "$OUT"
export PYTHONPATH=$PWD GENVAE="python3 -m genvae"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 benchmarks/batched_compile.py --device cuda --members 5 --rounds 3 --steps 100 2>&1 | grep -v Warning | tee "$OUT/compile.txt"
for c in --no-compile --compile; do  # a single run's train.compile: steps/s per 200-step window
  python3 -m genvae train --objective soft-intro --arch residual --data digits --steps 1000 $c --run-dir runs/gpu-compile$c \
    --no-progress --set train.log_every=200 > /dev/null 2>&1
  echo "$c $(python3 -c "import json; print([round(json.loads(l)['steps_per_s'], 1) for l in open('runs/gpu-compile$c/log.jsonl')])")" | tee -a "$OUT/compile.txt"
done
python3 -m pytest -q -x tests/test_batched.py tests/test_training.py -m "slow or not slow" 2>&1 | tail -n 15 > "$OUT/tests.txt"
DEADLINE=$DEADLINE PACK=$OUT/results.tgz WORK=runs/gpu-2d bash benchmarks/gpu_2d_suite.sh > "$OUT/suite.txt" 2>&1
tail -n 20 "$OUT/suite.txt"
