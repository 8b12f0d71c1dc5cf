"""`train.log_with` / `--log-with`: log.jsonl records and figures reach TensorBoard through Accelerate."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from genvae.cli import app
from genvae.core.tracking import flat_config

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


SMALL = ["--batch-size", "32", "--set", "arch.hidden=16", "--set", "objective.num_vae=2", "--no-progress"]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result, " ".join(result.output.split())


def losses(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def tensorboard_events(run_dir):
    events = event_accumulator.EventAccumulator(str(run_dir / "trackers" / "genvae"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_every_logged_record_and_the_figures_reach_tensorboard(tmp_path):
    run = tmp_path / "run"
    result, text = invoke("train", *SMALL, "--steps", "6", "--set", "train.log_every=2", "--set", "train.figures_every=3",
                          "--log-with", "tensorboard", "--run-dir", run)
    assert result.exit_code == 0, text
    assert f"curves and figures: tensorboard --logdir {run}" in text
    events = tensorboard_events(run)
    records = losses(run)
    assert records[-1]["step"] == 6 and "loss_encoder" in records[-1]  # past the warm-up
    for key in ("loss_vae", "loss_encoder", "loss_decoder", "rec", "kl", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in records if key in r], key
    assert [e.step for e in events.Images("samples")] == [3, 6]
    assert {"samples", "density", "losses"} <= set(events.Tags()["images"])


def test_a_resumed_run_can_start_logging_and_continues_the_steps(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", *SMALL, "--steps", "4", "--set", "train.log_every=1", "--run-dir", run)[0].exit_code == 0
    assert not (run / "trackers").exists()
    result, text = invoke("train", "--run-dir", run, "--resume", "--steps", "6", "--log-with", "tensorboard", "--no-progress")
    assert result.exit_code == 0, text
    assert json.loads((run / "config.json").read_text())["train"]["log_with"] == ["tensorboard"]
    assert [e.step for e in tensorboard_events(run).Scalars("rec")] == [5, 6]


@pytest.mark.parametrize(
    "tracker, expected",
    [
        ("tensorbored", "unknown tracker 'tensorbored' in train.log_with; available: aim,"),
        ("tensorboard", "train.log_with = 'tensorboard' needs its package: pip install tensorboard"),
    ],
)
def test_a_tracker_that_cannot_run_is_a_one_line_error(tmp_path, monkeypatch, tracker, expected):
    import accelerate.tracking

    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])  # as if nothing were installed
    result, text = invoke("train", *SMALL, "--steps", "2", "--log-with", tracker, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2 and expected in text and "Traceback" not in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_the_config_is_flattened_for_the_hyperparameter_table():
    flat = flat_config({"optim": {"lr": 2e-4, "milestones": [10, 20]}, "objective": {"beta_kl": {"class": 1.0}}})
    assert flat == {"optim.lr": 2e-4, "optim.milestones": "[10, 20]", "objective.beta_kl": "{'class': 1.0}"}


def test_values_a_crashed_process_logged_after_its_checkpoint_are_replaced_on_resume(tmp_path):
    from genvae.core.config import merge_user
    from genvae.core.run import resolve
    from genvae.core.trainer import train

    sets = ["train.steps=6", "train.batch_size=32", "train.log_every=1", "train.checkpoint_every=4", "arch.hidden=16",
            "objective.num_vae=2", "train.log_with=[tensorboard]"]  # fmt: skip
    cfg, data = resolve(merge_user(None, sets, {}))
    run = tmp_path / "run"

    def crash_at_6(record):
        if record["step"] == 6:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, data, run, progress=False, on_log=crash_at_6)  # last checkpoint: step 4
    crashed = {e.step: e.value for e in tensorboard_events(run).Scalars("rec")}
    train(cfg, data, run, resume=True, progress=False)
    records = losses(run)
    logged = [(e.step, e.value) for e in tensorboard_events(run).Scalars("rec")]
    assert [s for s, _ in logged] == [1, 2, 3, 4, 5, 6] == [r["step"] for r in records]
    assert [v for _, v in logged] == [pytest.approx(r["rec"], rel=1e-6) for r in records]
    assert sorted(crashed) == [1, 2, 3, 4, 5, 6]  # the crashed process had logged 5 and 6 (then replaced)
