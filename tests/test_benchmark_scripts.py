"""The benchmark scripts still run against the current API (tiny sizes; their numbers are not checked here)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# script -> (arguments, text its report must contain)
CASES = {
    "toy2d_steps_per_second": (["--steps", "2", "--warmup", "0"], "speed-up:"),
    "batched_throughput": (["--members", "1", "2", "--steps", "1", "--single-steps", "1", "--batch-size", "16", "--hidden", "16"], "member-steps/s"),
    "toy2d_metric_floor": (["--samples", "500", "--draws", "1"], "| checkerboard | 500 |"),
    "toy2d_kl_levels": ([str(ROOT / "docs/results/table2/paper/cells/8gaussians-intro")], "8gaussians-intro: kl_real"),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_script_runs(script, tmp_path):
    args, expected = CASES[script]
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert expected in result.stdout, result.stdout[-2000:]
