"""`genvae train` as a user meets it: run directories, Ctrl-C, resuming, warnings, output, --version."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from importlib.metadata import version

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from genvae.cli import app
from genvae.core.config import merge_user, write_json
from genvae.core.run import resolve
from genvae.core.run_lock import RunLock
from genvae.core.trainer import TrainingInterrupted, train
from genvae.run_info import run_info
from genvae.errors import RunDirError

runner = CliRunner()
SMALL = ["--batch-size", "32", "--set", "arch.hidden=16", "--set", "objective.num_vae=2", "--no-progress"]


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result, " ".join(result.output.split())


def small_config(steps=20, **sets):
    overrides = [f"train.{k}={v}" for k, v in {"steps": steps, "batch_size": 64, "log_every": 1, "checkpoint_every": 0, **sets}.items()]
    return resolve(merge_user(None, [*overrides, "arch.hidden=32", "objective.num_vae=5"], {}))


def losses(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def assert_same_run(a, b):
    """Same logged losses and bit-identical exported weights."""
    la, lb = losses(a), losses(b)
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    for x, y in zip(la, lb):
        assert [x[k] for k in x if k != "steps_per_s"] == pytest.approx([y[k] for k in x if k != "steps_per_s"], abs=1e-6, rel=1e-6)
    for part in ("encoder", "decoder"):
        wa, wb = load_file(str(a / part / "model.safetensors")), load_file(str(b / part / "model.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


# --- run directories ------------------------------------------------------------------------


def test_run_dir_that_is_a_file_or_inside_one_is_a_one_line_error(tmp_path):
    picture = tmp_path / "00.png"
    picture.write_bytes(b"png")
    for run_dir, expected in [(picture, "is a file"), (picture / "run", f"is inside {picture}, which is a file")]:
        result, text = invoke("train", "--run-dir", run_dir, "--steps", "2", *SMALL)
        assert result.exit_code == 2 and expected in text and "Traceback" not in result.output, result.output
    cfg, data = small_config(steps=2)
    with pytest.raises(RunDirError, match="is a file"):  # the trainer checks too
        train(cfg, data, picture, progress=False)


def test_a_non_empty_directory_that_is_no_run_is_refused_an_empty_one_is_used(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.png").write_bytes(b"png")
    result, text = invoke("train", "--run-dir", photos, "--steps", "2", *SMALL)
    assert result.exit_code == 2 and "is a non-empty directory that is not a genvae run" in text, result.output
    assert [p.name for p in photos.iterdir()] == ["cat.png"]
    cfg, data = small_config(steps=2)
    with pytest.raises(RunDirError, match="non-empty directory"):
        train(cfg, data, photos, progress=False)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(cfg, data, empty, progress=False).step == 2


# --- Ctrl-C ---------------------------------------------------------------------------------


def signal_at(step, signum):
    """An on_log callback that sends ``signum`` to this process when ``step`` is logged."""

    def on_log(record):
        if record["step"] == step:
            signal.raise_signal(signum)

    return on_log


def test_ctrl_c_saves_the_last_step_and_resuming_equals_a_straight_run(tmp_path):
    cfg, data = small_config(steps=20, checkpoint_every=10)
    train(cfg, data, tmp_path / "straight", progress=False)

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 13; checkpoint saved; continue with: genvae train --run-dir"):
        train(cfg, data, tmp_path / "stopped", progress=False, on_log=signal_at(13, signal.SIGINT))
    assert signal.getsignal(signal.SIGINT) is handler
    assert json.loads((tmp_path / "stopped" / "checkpoint" / "trainer.json").read_text())["step"] == 13
    assert [r["step"] for r in losses(tmp_path / "stopped")] == list(range(1, 14))
    assert run_info(tmp_path / "stopped")["state"].startswith("stopped at step 13 (")  # genvae info says why
    assert "): interrupted at step 13; checkpoint saved" in run_info(tmp_path / "stopped")["state"]

    assert train(cfg, data, tmp_path / "stopped", resume=True, progress=False).steps_run == 7
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")
    assert run_info(tmp_path / "stopped")["state"] == "finished: 20 of 20 steps"


def test_a_sigterm_after_the_last_step_is_not_lost(tmp_path):
    """A signal that arrives while the last checkpoint and figures are written still stops the
    caller (a bench would otherwise go on to its next run)."""
    cfg, data = small_config(steps=6)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM at step 6; checkpoint saved"):
        train(cfg, data, tmp_path / "run", progress=False, on_log=signal_at(6, signal.SIGTERM))
    assert signal.getsignal(signal.SIGTERM) is handler
    assert json.loads((tmp_path / "run" / "checkpoint" / "trainer.json").read_text())["step"] == 6


def test_a_crash_in_the_middle_of_a_log_window_resumes_to_the_same_records(tmp_path):
    """Records average log_every steps; the checkpoint at step 18 falls inside the window 17-20,
    so the resumed run's record at 20 must include steps 17 and 18 from before the crash."""
    cfg, data = small_config(steps=22, log_every=4, checkpoint_every=6)
    train(cfg, data, tmp_path / "straight", progress=False)

    def crash_at_20(record):
        if record["step"] == 20:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        train(cfg, data, tmp_path / "crashed", progress=False, on_log=crash_at_20)
    window = json.loads((tmp_path / "crashed" / "checkpoint" / "trainer.json").read_text())["log_window"]
    assert window["count"] == 2 and set(window["sums"]) >= {"loss_encoder", "loss_decoder"}
    assert train(cfg, data, tmp_path / "crashed", resume=True, progress=False).steps_run == 4
    assert [r["step"] for r in losses(tmp_path / "crashed")] == [4, 8, 12, 16, 20, 22]
    assert_same_run(tmp_path / "straight", tmp_path / "crashed")


def test_steps_per_s_is_the_speed_since_the_previous_record(tmp_path):
    cfg, data = small_config(steps=12, log_every=4)
    pause = {8: 4.0}  # a slow window: only the record after it shows it (long enough to stand out on a loaded machine)

    def slow(record):
        time.sleep(pause.get(record["step"], 0))

    train(cfg, data, tmp_path / "run", progress=False, on_log=slow)
    speeds = [r["steps_per_s"] for r in losses(tmp_path / "run")]
    assert speeds[2] < 4 / 4.0 < min(speeds[:2])


def test_steps_per_s_leaves_out_evaluations_and_figures(tmp_path, monkeypatch):
    """--eval-every / figures_every work is not training: 2 s of it in every window of 4 steps
    would make the speed below 2 steps/s."""
    from genvae.core.trainer import Trainer

    monkeypatch.setattr(Trainer, "evaluate", lambda self, metrics: time.sleep(1.0))
    monkeypatch.setattr(Trainer, "write_figures", lambda self: time.sleep(1.0) or [])
    cfg, data = small_config(steps=8, log_every=4, eval_every=4, figures_every=4, eval='["toy2d"]')
    train(cfg, data, tmp_path / "run", progress=False)
    assert min(r["steps_per_s"] for r in losses(tmp_path / "run")) > 4 / 2.0


def test_a_log_record_torn_by_a_kill_is_dropped_on_resume(tmp_path):
    cfg, data = small_config(steps=20, checkpoint_every=10)
    train(cfg, data, tmp_path / "straight", progress=False)
    killed = tmp_path / "killed"
    train(cfg.__class__.from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "steps": 10}}), data, killed, progress=False)
    log = killed / "log.jsonl"
    log.write_text(log.read_text() + '{"step": 11, "loss_vae": 0.5')  # a kill in the middle of a write
    assert train(cfg, data, killed, resume=True, progress=False).steps_run == 10
    assert [r["step"] for r in losses(killed)] == list(range(1, 21))


def test_a_second_ctrl_c_interrupts_at_once(tmp_path):
    cfg, data = small_config(steps=20)

    def ctrl_c_twice(record):
        if record["step"] == 3:
            # call the installed handler as the interpreter would, twice: sending real signals was
            # flaky under load (two SIGINTs that arrive before Python handles the first count as one)
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)

    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            train(cfg, data, tmp_path / "run", progress=False, on_log=ctrl_c_twice)
    finally:
        signal.signal(signal.SIGINT, outer)
    assert not isinstance(info.value, TrainingInterrupted)
    assert not (tmp_path / "run" / "checkpoint").exists()
    assert "no checkpoint yet: resuming starts from step 0" in run_info(tmp_path / "run")["state"]


def test_a_second_ctrl_c_during_the_save_the_first_asked_for_waits_for_it(tmp_path, monkeypatch):
    """Two Ctrl-C 50 ms apart: the second arrived while the first one's checkpoint was written and
    left a checkpoint.tmp and nothing to resume from."""
    from genvae.core.trainer import Trainer

    cfg, data = small_config(steps=20)
    write = Trainer._write_checkpoint

    def second_ctrl_c_midway(self):
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # the interpreter calling the handler installed now
        write(self)

    monkeypatch.setattr(Trainer, "_write_checkpoint", second_ctrl_c_midway)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            train(cfg, data, tmp_path / "run", progress=False, on_log=signal_at(3, signal.SIGINT))
    finally:
        signal.signal(signal.SIGINT, outer)
    assert not isinstance(info.value, TrainingInterrupted)  # the second acted at once after the save
    assert json.loads((tmp_path / "run" / "checkpoint" / "trainer.json").read_text())["step"] == 3
    assert not (tmp_path / "run" / "checkpoint.tmp").exists()
    assert "last checkpoint: step 3" in run_info(tmp_path / "run")["state"]


@pytest.mark.parametrize("signum, how", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "stopped by SIGTERM")])
def test_ctrl_c_or_sigterm_on_the_command_line_prints_how_to_continue(tmp_path, signum, how):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "genvae", "train", "--run-dir", str(run), "--steps", "2000", *SMALL, "--set", "train.log_every=5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENVAE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("step "):  # training has started
                proc.send_signal(signum)
                break
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err  # 130 after Ctrl-C, 143 after SIGTERM
    step = json.loads((run / "checkpoint" / "trainer.json").read_text())["step"]
    assert err.strip().splitlines()[-1] == f"{how} at step {step}; checkpoint saved; continue with: genvae train --run-dir {run} --resume"
    assert "Traceback" not in err

    resumed, text = invoke("train", "--run-dir", run, "--resume", "--steps", str(step + 2), "--no-progress")
    assert resumed.exit_code == 0 and f"done: step {step + 2}" in text, resumed.output


def test_a_run_that_another_process_trains_is_refused(tmp_path):
    run = tmp_path / "run"
    train(small_config(steps=4)[0], small_config()[1], run, progress=False)
    cfg, data = small_config(steps=6)
    other = RunLock(run)  # another trainer (an flock conflicts between two opens, even in one process)
    other.acquire()
    try:
        with pytest.raises(RunDirError, match=f"{run} is being trained by pid {os.getpid()} on .*; wait for it to finish"):
            train(cfg, data, run, resume=True, progress=False)
        result, text = invoke("train", "--run-dir", run, "--resume", "--steps", "6", "--no-progress")
        assert result.exit_code == 2 and "is being trained by pid" in text and "Traceback" not in result.output, result.output
        assert "resuming at step" not in text  # refused before it says what it would do
        fresh = tmp_path / "fresh"  # a new run whose directory another process has just locked
        fresh.mkdir()
        held = RunLock(fresh)
        held.acquire()
        with pytest.raises(RunDirError, match="is being trained by pid"):
            train(cfg, data, fresh, progress=False)
        held.release()
        assert not (fresh / "config.json").exists()
    finally:
        other.release()
    assert train(cfg, data, run, resume=True, progress=False).step == 6  # free again once the other has stopped
    assert [r["step"] for r in losses(run)] == list(range(1, 7))
    assert train(cfg, data, fresh, progress=False).step == 6  # a lock file alone does not make a directory "used"


# --- resuming -------------------------------------------------------------------------------


def test_data_refused_at_the_first_batch_leaves_no_run_behind(tmp_path, monkeypatch):
    """A data error met at the first batch (after config.json was written) removes the new run
    again, so that the corrected command can use the same --run-dir; a run directory that existed
    before (empty) stays."""
    from genvae.errors import DataError
    from genvae.plugins.datasets.toy2d import Toy2DStream

    def refuse(self):
        raise DataError("these points are not what this dataset reads")
        yield

    monkeypatch.setattr(Toy2DStream, "__iter__", refuse)
    for run in (tmp_path / "new", tmp_path / "made"):
        if run.name == "made":
            run.mkdir()
        result, text = invoke("train", "--data", "8gaussians", "--steps", "2", "--run-dir", run, *SMALL)
        assert result.exit_code == 2 and "error: these points are not what this dataset reads" in text
        assert (run.name == "made") == run.exists() and (run.name == "new" or list(run.iterdir()) == [])
    monkeypatch.undo()
    result, text = invoke("train", "--data", "8gaussians", "--steps", "2", "--run-dir", tmp_path / "new", *SMALL)
    assert result.exit_code == 0 and "done: step 2" in text, text


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0(tmp_path):
    cfg, data = small_config(steps=20)
    train(cfg, data, tmp_path / "straight", progress=False)
    stopped = tmp_path / "stopped"
    write_json(stopped / "config.json", cfg.to_dict())
    (stopped / "log.jsonl").write_text(json.dumps({"step": 1, "loss_vae": 123.0}) + "\n")  # logged before the crash
    assert train(cfg, data, stopped, resume=True, progress=False).steps_run == 20
    assert_same_run(tmp_path / "straight", stopped)

    cli_run = tmp_path / "cli"
    write_json(cli_run / "config.json", resolve(merge_user(None, ["arch.hidden=16", "objective.num_vae=2"], {"train.steps": 2, "train.batch_size": 32}))[0].to_dict())
    result, text = invoke("train", "--run-dir", cli_run, "--resume", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "stopped before its first checkpoint; training it again from step 0 with its saved config" in text
    assert "done: step 2" in text


def test_resume_with_new_steps_updates_config_json_and_a_finished_run_says_so(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "--run-dir", run, "--steps", "4", *SMALL)[0].exit_code == 0
    result, _ = invoke("train", "--run-dir", run, "--resume", "--steps", "6", "--set", "train.log_every=3", "--no-progress")
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())["train"]
    assert saved["steps"] == 6 and saved["log_every"] == 3

    log = (run / "log.jsonl").read_text()
    for args in ([], ["--steps", "5"]):
        result, text = invoke("train", "--run-dir", run, "--resume", "--no-progress", *args)
        assert result.exit_code == 0, result.output
        steps = args[1] if args else "6"
        assert f"already at step 6 of train.steps={steps}; nothing to train (pass --steps N with N > 6 to train longer)" in text
        assert "done" not in text
    assert (run / "log.jsonl").read_text() == log
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 6  # nothing trained: unchanged


def test_resume_says_where_it_starts_and_writes_figures_a_kill_left_missing(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "--run-dir", run, "--steps", "4", *SMALL)[0].exit_code == 0
    result, text = invoke("train", "--run-dir", run, "--resume", "--steps", "5", "--no-progress")
    assert result.exit_code == 0 and "resuming at step 4 of 5" in text, result.output
    assert "warning" not in text  # the warm-up (2 steps) is over
    figures = sorted(p.name for p in run.glob("*.png"))
    for p in run.glob("*.png"):  # as a kill -9 after the final checkpoint leaves the run
        p.unlink()
    result, text = invoke("train", "--run-dir", run, "--resume", "--no-progress")
    assert result.exit_code == 0 and "nothing to train" in text and "wrote the missing figure" in text, result.output
    assert sorted(p.name for p in run.glob("*.png")) == figures
    result, text = invoke("train", "--run-dir", run, "--resume", "--no-progress")
    assert "wrote the missing figure" not in text  # complete runs are left as they are


# --- damaged run directories ----------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 2-step run with its checkpoint, to copy and damage."""
    from genvae.core.plugins import use_plugins

    run = tmp_path_factory.mktemp("damaged") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD", "1")
        use_plugins(None)
        result, _ = invoke("train", "--run-dir", run, "--steps", "2", *SMALL)
        use_plugins(None)
    assert result.exit_code == 0, result.output
    return run


def damaged_copy(run, tmp_path, file, how):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    path = copy / file
    assert path.is_file()
    if how == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "delete":
        path.unlink()
    elif how == "empty-json":
        path.write_text("{}")
    else:
        path.write_text("{")
    return copy


def one_error_line(result):
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and "Traceback" not in result.output and len(errors) == 1, result.output
    return errors[0]


RESTORE = "restore it from a backup, or use an earlier copy of the run, or start a new run"


@pytest.mark.parametrize(
    "file, how, expected",
    [
        ("checkpoint/encoder/model.safetensors", "truncate", "is unreadable (truncated or not a safetensors file); copy {run}/encoder/model.safetensors over it"),
        ("checkpoint/accelerate/optimizer.bin", "truncate", "is unreadable (truncated or not a PyTorch file); " + RESTORE),
        ("checkpoint/accelerate/optimizer.bin", "delete", "is missing; " + RESTORE),
        ("checkpoint/accelerate/custom_checkpoint_0.pkl", "truncate", "is unreadable (truncated or not a PyTorch file); " + RESTORE),
        ("checkpoint/accelerate/custom_checkpoint_3.pkl", "delete", "is missing; " + RESTORE),  # the last one: no gap in the numbers
        # accelerate itself only logs that it could not load the random states
        ("checkpoint/accelerate/random_states_0.pkl", "truncate", "is unreadable (truncated or not a PyTorch file); " + RESTORE),
        ("checkpoint/accelerate/random_states_0.pkl", "delete", "is missing; " + RESTORE),
        ("checkpoint/trainer.json", "garble", "is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); " + RESTORE),
        ("config.json", "garble", "is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); " + RESTORE),
        ("config.json", "empty-json", "is not a run's config (no 'train' section); " + RESTORE),
    ],
)
def test_resuming_a_damaged_run_names_the_file_and_the_fix_in_one_line(finished_run, tmp_path, file, how, expected):
    run = damaged_copy(finished_run, tmp_path, file, how)
    line = one_error_line(invoke("train", "--run-dir", run, "--resume", "--steps", "3", "--no-progress")[0])
    assert line.startswith(f"error: {run / file} {expected.format(run=run)}"), line


def test_a_damaged_checkpoint_is_a_run_dir_error_with_the_cause_chained(finished_run, tmp_path):
    run = damaged_copy(finished_run, tmp_path, "checkpoint/accelerate/optimizer.bin", "truncate")
    cfg, data = resolve(json.loads((run / "config.json").read_text()))
    with pytest.raises(RunDirError, match="optimizer.bin is unreadable") as info:
        train(cfg, data, run, resume=True, progress=False)
    assert isinstance(info.value.__cause__, RuntimeError)


# --- what training prints -------------------------------------------------------------------


def test_warm_up_covering_the_whole_run_is_warned_about(tmp_path):
    result, text = invoke("train", "--run-dir", tmp_path / "a", "--steps", "2", *SMALL)
    assert result.exit_code == 0, result.output
    assert "warning: train.steps (2) <= objective.num_vae (2): the whole run is the plain-VAE warm-up" in text
    result, text = invoke("train", "--run-dir", tmp_path / "b", "--steps", "3", *SMALL)
    assert result.exit_code == 0 and "warning" not in text, result.output
    result, text = invoke("train", "--run-dir", tmp_path / "c", "--objective", "vae", "--steps", "2", *SMALL[:4])
    assert result.exit_code == 0 and "warning" not in text, result.output


@pytest.mark.parametrize("flag", ["--no-progress", "--progress"])  # --progress: the output is not a terminal here
def test_without_a_progress_bar_a_line_per_logged_step(tmp_path, flag):
    args = [a for a in SMALL if a != "--no-progress"]
    result, _ = invoke("train", "--run-dir", tmp_path / "run", "--steps", "6", "--set", "train.log_every=2", *args, flag)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"]
    assert "loss_" in lines[-1] and lines[-1].endswith("steps/s")


def test_the_python_api_without_progress_prints_nothing(tmp_path, capsys):
    cfg, data = small_config(steps=3)
    train(cfg, data, tmp_path / "run", progress=False)
    assert capsys.readouterr().out == ""


def test_config_help_shows_the_table_names():
    result, text = invoke("train", "--help")
    assert result.exit_code == 0 and "TOML file with [train] [optim] [objective] [arch] [data] tables, or a run's config.json (or its run directory)." in " ".join(text.split())


def test_version():
    result, _ = invoke("--version")
    assert result.exit_code == 0 and result.output == f"genvae {version('genvae')}\n"


@pytest.mark.parametrize(
    "setting, expected",
    [
        ("optim.milestones=[100,50]", "optim.milestones must be in increasing order, got [100, 50]; write [50, 100]"),
        ("optim.milestones=[0,50]", "optim.milestones must be positive steps"),
        ("objective.scale=-1", "objective.scale must be a number >= 0, got -1"),
        ("objective.beta_kl=nan", "objective.beta_kl must be a number >= 0, got nan"),
        ("optim.lr=nan", "optim.lr must be a positive number, got nan"),
        ("optim.lr=inf", "optim.lr must be a positive number, got inf"),
        ("optim.gamma=-1", "optim.gamma must be a positive number, got -1"),
        ("optim.lr_encoder=-1", "optim.lr_encoder must be >= 0 (0: unused), got -1"),
        ("optim.grad_clip=-1", "optim.grad_clip must be >= 0 (0: unused), got -1"),
        ("train.seed=-1", "train.seed must lie in [0, 2**32 - 1], got -1"),
        ("train.seed=4294967296", "train.seed must lie in [0, 2**32 - 1], got 4294967296"),
        ('arch.channels=[16,"a"]', "arch.channels[1] = 'a' has the wrong type; expected int"),  # items of list[int] too
        ("arch.channels=[16,32.5]", "arch.channels[1] = 32.5 has the wrong type; expected int"),
        ("arch.channels=[16,true]", "arch.channels[1] = True has the wrong type; expected int"),
    ],
)
def test_bad_values_are_refused(setting, expected):
    arch = ["--data", "digits", "--arch", "residual"] if setting.startswith("arch.") else []
    result, text = invoke("train", "--set", setting, *arch, "--dry-run")
    assert result.exit_code == 2 and expected in text and "Traceback" not in result.output, result.output


@pytest.mark.parametrize(
    "text, value",
    [
        ("a.b=0.5", 0.5),
        ("a.b=[8,16]", [8, 16]),
        ('a.b=["square"]', ["square"]),
        ("a.b=[square, cross]", ["square", "cross"]),  # bare words in brackets: a list of strings
        ("a.b=[square, 2]", ["square", 2]),
        ("a.b=[]", []),
        ("a.b=[", "["),
        ("a.b=square", "square"),
    ],
)
def test_set_values_are_toml_literals_or_strings(text, value):
    from genvae.core.config import parse_key_value

    assert parse_key_value(text) == ("a.b", value)


def test_an_interrupted_bench_says_that_the_same_command_continues(monkeypatch):
    import genvae.bench_ood

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted(Path("runs/x"), 13, signal.SIGTERM)

    monkeypatch.setattr(genvae.bench_ood, "run_bench_ood", interrupted)
    result, text = invoke("bench", "ood", "--steps", "2", "--seeds", "1")
    assert result.exit_code == 143 and "interrupted; run the same bench command again to continue" in text, result.output


@pytest.mark.parametrize(
    "args, named",
    [
        (["train", "--data", "8gaussians", "--data", "rings", "--dry-run"], "--data"),
        (["train", "--data", "rings", "--steps=3", "-o", "vae", "--objective", "soft-intro", "--dry-run"], "--objective"),
        (["bench", "table2", "--steps", "1", "--steps", "2", "--out", "x", "--device", "no-such-device"], "--steps"),
        (["eval", "toy2d", "some-run", "--out", "a", "--out", "b"], None),
    ],
)
def test_an_option_given_twice_is_refused_before_anything_runs(tmp_path, monkeypatch, args, named):
    """click would keep the last of ``--data 8gaussians --data rings`` silently; genvae names the
    option instead (exit 2, nothing written). Flags and --set may repeat."""
    monkeypatch.chdir(tmp_path)
    result, out = invoke(*args)
    if named is None:  # eval toy2d has no --out: click's own error, not ours
        assert result.exit_code == 2 and "given more than once" not in out
        return
    assert result.exit_code == 2 and f"{named} given more than once; give it once" in out
    assert list(tmp_path.iterdir()) == []
    result, out = invoke("train", "--data", "rings", "--set", "arch.hidden=8", "--set", "arch.depth=2", "--dry-run", "--dry-run")
    assert result.exit_code == 0, out


def test_resume_runs_the_final_evaluation_a_kill_left_undone(tmp_path):
    run = tmp_path / "run"
    args = ("--set", "train.eval_every=2", "--eval", "toy2d", "--set", "train.eval_options={toy2d={num_samples=500,grid_points=64,gnelbo_batches=2}}")
    assert invoke("train", "--data", "8gaussians", "--run-dir", run, "--steps", "4", *SMALL, *args)[0].exit_code == 0
    evals = (run / "evals.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in evals] == [0, 2, 4]
    (run / "evals.jsonl").write_text("\n".join(evals[:-1]) + "\n")  # as a kill after the final checkpoint leaves it
    result, text = invoke("train", "--run-dir", run, "--resume", "--no-progress")
    assert result.exit_code == 0 and "nothing to train" in text, result.output
    assert [json.loads(line)["step"] for line in (run / "evals.jsonl").read_text().splitlines()] == [0, 2, 4]


def test_brackets_in_a_message_are_printed_not_read_as_markup(tmp_path):
    """Rich read '[ood]' in '--set train.eval=[ood]' as a style tag and printed '--set train.eval='."""
    result, text = invoke("train", "--run-dir", tmp_path / "run", "--data", "8gaussians", "--set", "train.eval_options={ood={out='mnist'}}")
    assert result.exit_code == 2 and text.endswith("add it: --set train.eval=[ood]"), result.output
