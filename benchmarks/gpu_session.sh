#!/bin/bash
# One lent-GPU session in one call (the device tool: ~10 usable minutes, results only from $OUT):
#   1. compiled (CUDA graphs) vs eager batched step, same process (benchmarks/batched_compile.py);
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
python3 -m pytest -q -x tests/test_batched.py tests/test_training.py -m "slow or not slow" 2>&1 | tail -n 15 > "$OUT/tests.txt"
DEADLINE=$DEADLINE PACK=$OUT/results.tgz WORK=runs/gpu-2d bash benchmarks/gpu_2d_suite.sh > "$OUT/suite.txt" 2>&1
tail -n 20 "$OUT/suite.txt"
