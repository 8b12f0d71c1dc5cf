"""The warning that the introspective game has stopped: the encoder gives fakes less KL than real data."""

from __future__ import annotations

import json

import pytest

from genvae.core.health import kl_pairs, repulsion_warning
from genvae.run_info import format_info, run_info


def log(fake_over_real: float, steps: int = 30, real: float = 20.0, first_step: int = 100) -> list[dict]:
    return [{"step": first_step * (i + 1), "kl": real, "kl_fake": fake_over_real * real, "kl_fake_dec": 0.0} for i in range(steps)]


def test_warns_when_fakes_get_clearly_less_kl_than_real_data():
    message = repulsion_warning(log(0.8))
    assert message is not None
    assert "over steps 2500-3000 (16 vs 20 nats)" in message  # the last fifth: 6 of 30 records
    assert "samples.png" in message


def test_silent_at_the_equilibrium_and_while_fakes_are_repelled():
    assert repulsion_warning(log(0.95)) is None  # equal KL within a few per cent: the game's end point
    assert repulsion_warning(log(1.5)) is None
    assert repulsion_warning(log(0.5, steps=4)) is None  # too few records to say
    assert repulsion_warning(log(0.5, steps=30, first_step=10)) is None  # a game of 300 steps (a smoke test) says nothing yet
    assert repulsion_warning(log(0.5, steps=30, first_step=10), warmup_steps=0) is None
    assert repulsion_warning(log(0.5, steps=30, first_step=20)) is not None  # 600 steps


def test_only_the_tail_of_the_game_counts():
    early_bad = log(0.5, steps=20) + [dict(r, step=r["step"] + 2000) for r in log(1.0, steps=10)]
    assert repulsion_warning(early_bad) is None
    warmup = log(0.5, steps=30)  # all at steps <= 3000
    assert repulsion_warning(warmup, warmup_steps=3000) is None
    assert repulsion_warning(warmup, warmup_steps=2000) is not None


def test_latent_groups_are_summed():
    record = {"step": 1, "kl_class": 10.0, "kl_content": 5.0, "kl_fake_class": 6.0, "kl_fake_content": 5.0, "kl_fake_dec_class": 1.0}
    assert sorted(kl_pairs(record)) == [("kl_class", "kl_fake_class"), ("kl_content", "kl_fake_content")]
    records = [dict(record, step=100 * i) for i in range(1, 11)]
    assert "(11 vs 15 nats)" in repulsion_warning(records)
    assert repulsion_warning([{"step": i, "kl": 3.0, "loss_vae": 1.0} for i in range(10)]) is None  # a VAE: nothing to compare


def test_info_shows_the_warning(digits_run_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run_dir, run)
    assert run_info(run)["warning"] is None
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log(0.7)))
    rows = dict(format_info(run_info(run)))
    assert rows["warning"].startswith("the encoder gave generated samples less KL than real data")


def test_train_prints_the_warning_at_the_end(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import genvae.core.health as health
    from genvae.cli import app

    monkeypatch.setattr(health, "RATIO", 1e9)  # any KL of fakes counts as too low: the path, not the threshold
    monkeypatch.setattr(health, "MIN_GAME_STEPS", 1)
    args = ["train", "--data", "8gaussians", "--steps", "12", "--batch-size", "32", "--set", "arch.hidden=16", "--set", "objective.num_vae=2",
            "--set", "train.log_every=1", "--no-progress", "--run-dir", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "warning: the encoder gave generated samples less KL than real data over steps 8-12" in " ".join(result.output.split())


def test_the_python_api_warns_too(tmp_path, monkeypatch):
    import genvae
    import genvae.core.health as health

    monkeypatch.setattr(health, "RATIO", 1e9)
    monkeypatch.setattr(health, "MIN_GAME_STEPS", 1)
    settings = {"arch.hidden": 16, "objective.num_vae": 2, "train.log_every": 1, "train.figures_every": 0}
    with pytest.warns(health.GameStoppedWarning, match="over steps 8-12"):
        genvae.train(tmp_path / "run", data="8gaussians", steps=12, batch_size=32, settings=settings)
