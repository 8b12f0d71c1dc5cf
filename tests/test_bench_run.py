"""Rerunning a bench: which settings may differ, and how a difference is reported."""

import json

import pytest

from genvae.core.bench_run import continue_or_start, differing_settings, settings_change
from genvae.errors import RunDirError

SAVED = {"steps": 100, "seeds": [0], "resolved": {"train": {"steps": 100}, "objective": {"beta_kl": 0.3}}}


def test_a_given_setting_is_named_with_both_values_and_its_derived_keys_are_not():
    wanted = {**SAVED, "steps": 300, "resolved": {"train": {"steps": 300}, "objective": {"beta_kl": 0.3}}}
    assert differing_settings(SAVED, wanted) == ["resolved.train.steps", "steps"]
    assert settings_change(SAVED, wanted) == "steps: 100 saved, 300 now"


def test_a_changed_default_is_named_by_its_resolved_key():
    wanted = {**SAVED, "resolved": {"train": {"steps": 100}, "objective": {"beta_kl": 0.5}}}
    assert settings_change(SAVED, wanted) == "resolved.objective.beta_kl: 0.3 saved, 0.5 now"
    assert settings_change(SAVED, json.loads(json.dumps(SAVED))) == ""
    assert settings_change({"a": 1}, {"b": 2}) == "a: 1 saved, (none) now; b: (none) saved, 2 now"


def test_continue_or_start(tmp_path):
    run = tmp_path / "run"
    assert continue_or_start(run, {"train": {"steps": 5}}) is False  # nothing there
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"steps": 5, "log_every": 1}}))
    with pytest.raises(RunDirError, match=r"other settings \(train.steps: 5 saved, 6 now\); pass the saved ones"):
        continue_or_start(run, {"train": {"steps": 6, "log_every": 1}})
    # bookkeeping intervals may change; a run that never reached a checkpoint is started afresh
    assert continue_or_start(run, {"train": {"steps": 5, "log_every": 7}}) is False
    assert not run.exists()


def test_a_result_saved_before_a_bookkeeping_key_existed_is_still_reused():
    """log_with, eval_every, ... came after results in docs/results were saved; they do not change
    what is learned, so those results stay valid (`bench table2 --report` must not refuse them)."""
    from dataclasses import asdict

    from genvae.core.bench_run import BOOKKEEPING, bookkeeping_keys
    from genvae.core.config import TrainConfig

    train_now = asdict(TrainConfig(steps=100))
    saved_train = {k: v for k, v in train_now.items() if k not in BOOKKEEPING}
    now = {**SAVED, "resolved": {**SAVED["resolved"], "train": train_now}}
    saved = {**SAVED, "resolved": {**SAVED["resolved"], "train": saved_train}}
    assert settings_change(saved, now, ignore=bookkeeping_keys("resolved.train")) == ""
    assert "log_with" in BOOKKEEPING and "eval" in BOOKKEEPING


def sleep_or_fail(task):
    """A bench task for the worker pool: fails at once, or sleeps (a cell training)."""
    import time

    if task["fail"]:
        raise ValueError("this cell failed")
    time.sleep(task["sleep"])
    return "slept"


def test_a_failing_cell_stops_the_workers_instead_of_waiting_for_every_other_cell():
    """Without stopping them the pool runs the sleeping task and the one queued behind it (120 s)."""
    import time

    from genvae.bench2d import _run_tasks

    tasks = [{"fail": True}, {"fail": False, "sleep": 60}, {"fail": False, "sleep": 60}]
    started = time.monotonic()
    with pytest.raises(ValueError, match="this cell failed"):
        _run_tasks(sleep_or_fail, tasks, jobs=2, log=None, name="test")
    assert time.monotonic() - started < 45  # worker start-up (importing torch) and the failure, not the 60 s sleeps


def test_sigterm_ends_a_bench_with_the_line_that_says_the_same_command_continues(monkeypatch):
    """SIGTERM (kill, timeout, a job scheduler) outside a training loop: one line, exit code 143."""
    import os
    import signal
    import time

    from typer.testing import CliRunner

    import genvae.bench2d
    from genvae.cli import app

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal's handler runs here

    def test_guard(signum, frame):  # without the bench's own handler, this one (not the test process) ends the bench
        raise RuntimeError("SIGTERM reached the default handler")

    monkeypatch.setattr(genvae.bench2d, "run_table2", terminated)
    previous = signal.signal(signal.SIGTERM, test_guard)
    try:
        result = CliRunner().invoke(app, ["bench", "table2", "--out", "unused", "--steps", "2", "--seeds", "1", "--device", "cpu"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, (result.output, result.exception)
    assert "interrupted; run the same bench command again to continue" in " ".join(result.output.split())
