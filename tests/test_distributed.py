"""Two CPU processes (gloo) with batch B train exactly what one process trains with batch 2B:
each process takes its rows of the global batch and of the global noise, and the trainer
averages the trained part's gradients after every phase (no DistributedDataParallel, no hang,
no 'parameters that did not receive grad' error)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(objective: str, batch_size: int) -> list[str]:
    # Soft-IntroVAE is also evaluated during training: the main process evaluates, the other waits
    evaluating = ["objective.num_vae=2", "train.eval_every=3", "train.eval_options={toy2d={num_samples=200, grid_points=16, gnelbo_batches=1}}"]
    return [f"train.batch_size={batch_size}", "train.steps=6", "train.checkpoint_every=3", "arch.hidden=16"] + (
        evaluating if objective == "soft-intro" else []
    )


def _worker(rank: int, world: int, run_dir: str, port: int, objective: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), ACCELERATE_USE_CPU="true", CUDA_VISIBLE_DEVICES="",
                      GENVAE_DISABLE_PLUGIN_AUTOLOAD="1")
    torch.set_num_threads(1)
    from genvae.core.config import merge_user
    from genvae.core.run import resolve
    from genvae.core.trainer import Trainer, leave_process_group

    cfg, data = resolve(merge_user(None, _settings(objective, 16), {"objective.name": objective}))
    trainer = Trainer(cfg, data, run_dir, progress=False)
    initial = {k: v.clone() for k, v in trainer.parts["encoder"].state_dict().items()}
    trainer.fit()
    assert trainer.accelerator.num_processes == world
    state = {f"{part}.{k}": v for part, m in trainer.parts.items() for k, v in m.state_dict().items()}
    state["moved"] = torch.tensor(any(not torch.equal(initial[k], v) for k, v in trainer.parts["encoder"].state_dict().items()))
    torch.save(state, os.path.join(run_dir, f"rank{rank}.pt"))
    leave_process_group()  # as `genvae` does after every command; without it gloo can abort the process that exits first


@pytest.mark.parametrize("objective", ["vae", "intro", "soft-intro"])
def test_two_processes_with_batch_b_equal_one_with_batch_2b(tmp_path, objective):
    from genvae.core.config import merge_user
    from genvae.core.run import resolve
    from genvae.core.trainer import Trainer

    run_dir = str(tmp_path / "run")
    mp.start_processes(_worker, args=(2, run_dir, _free_port(), objective), nprocs=2, join=True, start_method="spawn")
    a, b = torch.load(tmp_path / "run" / "rank0.pt"), torch.load(tmp_path / "run" / "rank1.pt")
    assert bool(a.pop("moved")) and bool(b.pop("moved"))
    assert (tmp_path / "run" / "checkpoint" / "trainer.json").is_file()

    single = Trainer(*resolve(merge_user(None, _settings(objective, 32), {"objective.name": objective})), tmp_path / "single", progress=False)
    single.fit()
    reference = {f"{part}.{k}": v for part, m in single.parts.items() for k, v in m.state_dict().items()}
    for key in reference:
        assert torch.allclose(a[key], b[key], atol=1e-6), key  # the processes agree ...
        assert torch.allclose(a[key], reference[key], atol=1e-5), key  # ... with one process, batch 2B
    if objective == "soft-intro":
        records = [json.loads(line) for line in (tmp_path / "run" / "evals.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [0, 3, 6]  # written once, by the main process


def test_accelerate_launch_of_the_cli_trains_one_run_and_exits_cleanly(tmp_path):
    """The documented multi-process command: both processes finish with exit code 0 (the
    process group is left before exiting) and write one run."""
    import subprocess
    import sys

    run = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "--main_process_port", str(_free_port()),
               "-m", "genvae", "train", "--objective", "soft-intro", "--steps", "8", "--run-dir", str(run), "--no-progress",
               "--set", "arch.hidden=16", "--set", "objective.num_vae=2", "--set", "train.checkpoint_every=4"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENVAE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("done: step 8") == 1, proc.stdout  # only the main process reports
    assert json.loads((run / "checkpoint" / "trainer.json").read_text())["step"] == 8
    assert "terminate called" not in proc.stderr
