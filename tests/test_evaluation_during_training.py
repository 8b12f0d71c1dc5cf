"""Evaluation during training (train.eval_every / eval / eval_options): when it runs, what it
records, that it changes nothing of the training, and how it fails."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import genvae
from genvae.cli import app
from genvae.core.evaluation import records_to_draw
from genvae.core.interfaces import Metric
from genvae.core.plugins import get_plugins, load_plugins, use_plugins
from genvae.errors import ConfigError, EvaluationError
from genvae.viz.curves import read_records

SMALL_TOY2D = {"num_samples": 500, "grid_points": 32, "gnelbo_batches": 2, "gnelbo_batch_size": 64}
BASE = {"arch.hidden": 16, "objective.num_vae": 4, "train.log_every": 5, "train.figures_every": 0, "train.checkpoint_every": 10}
EVAL = {"train.eval_every": 10, "train.eval_options": {"toy2d": SMALL_TOY2D}}


def _train(run, steps=20, resume=False, **settings):
    return genvae.train(run, data="8gaussians", steps=steps, batch_size=32, resume=resume, settings=None if resume else {**BASE, **settings})


def test_evaluates_at_the_start_every_interval_and_at_the_end(tmp_path, one_thread):
    run = tmp_path / "run"
    result = _train(run, steps=25, **EVAL)
    records = read_records(run / "evals.jsonl")
    assert [r["step"] for r in records] == [0, 10, 20, 25]
    assert {"toy2d.kl", "toy2d.jsd", "toy2d.gnelbo"} <= set(records[-1])
    assert (run / "evals.png").is_file() and run / "evals.png" in result.figures
    assert [r["step"] for r in records_to_draw(run)] == [10, 20, 25]  # the untrained networks' values would squash the curves
    # the last evaluation is what `genvae eval` measures on the finished run
    metric = get_plugins().metrics.get("toy2d")
    after = metric.evaluate(genvae.load_run(run), seed=0, out_dir=tmp_path / "after", figures=False, **SMALL_TOY2D)
    for key in ("kl", "jsd", "gnelbo"):
        assert records[-1][f"toy2d.{key}"] == pytest.approx(after[key], rel=1e-6)
    assert records[0]["toy2d.gnelbo"] != records[-1]["toy2d.gnelbo"]  # the networks did change in between


class NoisyMetricPlugin:
    """A third-party metric that draws from the global random generator, as a careless one might."""

    @staticmethod
    @genvae.hookimpl
    def genvae_register_metrics(register):
        def evaluate(run, seed=0, draws=3):
            run.encoder.eval()  # and leaves the networks in eval mode
            return {"noise": float(torch.randn(draws).sum()), "draws": draws, "note": "text"}

        register("noisy", Metric(evaluate=evaluate))


@pytest.fixture
def noisy_metric():
    use_plugins(load_plugins(extra=[("noisy", NoisyMetricPlugin())]))
    yield
    use_plugins(None)


def test_evaluating_changes_nothing_of_the_training(tmp_path, one_thread, noisy_metric):
    settings = {"arch.channels": [4, 8], "arch.z_dim": 4, "train.log_every": 5, "train.figures_every": 0}  # BatchNorm: the mode matters
    random_state_after = []
    for name, evaluating in (("plain", {}), ("evaluated", {"train.eval_every": 5, "train.eval": ["noisy"]})):
        genvae.train(tmp_path / name, objective="soft-intro", arch="residual", data="digits", steps=20, batch_size=8,
                     settings={**settings, **evaluating})  # fmt: skip
        random_state_after.append(torch.random.get_rng_state())
    assert torch.equal(*random_state_after)  # a plugin objective drawing from it would see the same numbers
    for role in ("encoder", "decoder"):
        plain, evaluated = (load_file(tmp_path / d / role / "model.safetensors") for d in ("plain", "evaluated"))
        assert all(torch.equal(plain[k], evaluated[k]) for k in plain)
    assert not (tmp_path / "plain" / "evals.jsonl").exists()
    records = read_records(tmp_path / "evaluated" / "evals.jsonl")
    assert [r["step"] for r in records] == [0, 5, 10, 15, 20]
    assert set(records[-1]) == {"step", "noisy.noise"}  # the measured (float) numbers only


def test_resume_forgets_evaluations_after_the_checkpoint_and_goes_on(tmp_path, one_thread):
    run = tmp_path / "run"
    _train(run, steps=20, **EVAL)
    with open(run / "evals.jsonl", "a") as f:  # as if killed after evaluating step 30, before its checkpoint
        f.write(json.dumps({"step": 30, "toy2d.kl": -1.0}) + "\n")
    _train(run, steps=40, resume=True)
    records = read_records(run / "evals.jsonl")
    assert [r["step"] for r in records] == [0, 10, 20, 30, 40]
    assert records[3]["toy2d.kl"] != -1.0


def test_settings_that_could_only_fail_later_are_refused_at_once(tmp_path, one_thread):
    with pytest.raises(ConfigError, match="train.eval_every is 0; set train.eval_every=N"):
        _train(tmp_path / "a", **{"train.eval": ["toy2d"]})
    with pytest.raises(ConfigError, match="unknown metric 'toy2'.*toy2d"):
        _train(tmp_path / "b", **{"train.eval_every": 10, "train.eval": ["toy2"]})
    with pytest.raises(ConfigError, match="'ood' is not in train.eval; add it"):
        _train(tmp_path / "c", **{"train.eval_every": 10, "train.eval_options": {"ood": {"out": "mnist"}}})
    with pytest.raises(ConfigError, match=r"train.eval_options = 3 has the wrong type; expected a table of tables such as \{name=\{a=1.0"):
        _train(tmp_path / "e", **{"train.eval_every": 10, "train.eval_options": 3})
    with pytest.raises(ConfigError, match=r"train.eval_options.toy2d = 3 has the wrong type; expected a table such as \{a=1.0, b=2.0\}$"):
        _train(tmp_path / "f", **{"train.eval_every": 10, "train.eval_options": {"toy2d": 3}})
    with pytest.raises(ConfigError, match="train.eval names no metric"):
        genvae.train(tmp_path / "d", data="digits", steps=2, settings={"train.eval_every": 10})
    assert not any((tmp_path / d).exists() for d in "abcdef")


def test_a_failing_evaluation_stops_training_at_a_checkpoint_and_resume_fixes_it(tmp_path, one_thread):
    run = tmp_path / "run"
    bad = {"train.eval_every": 10, "train.eval_options": {"toy2d": {**SMALL_TOY2D, "bins": 7}}}
    with pytest.raises(EvaluationError, match="failed at step 0: metric 'toy2d' has no option 'bins'; its options: .*grid_points"):
        _train(run, **bad)
    assert "has no option 'bins'" in json.loads((run / "stopped.json").read_text())["reason"]
    fixed = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--resume", "--no-progress",
                                     "--set", "train.eval_options={toy2d={num_samples=500, grid_points=32, gnelbo_batches=2}}"])  # fmt: skip
    assert fixed.exit_code == 0, fixed.output
    assert "evaluates toy2d every 10 steps" in fixed.output and "eval step 0: toy2d.kl " in fixed.output  # shown as they come
    assert [r["step"] for r in read_records(run / "evals.jsonl")] == [0, 10, 20]
    assert not (run / "stopped.json").exists()


def test_info_and_compare_show_the_evaluations(tmp_path, one_thread):
    for name in ("a", "b"):
        _train(tmp_path / name, steps=10, **EVAL)
    info = CliRunner().invoke(app, ["info", str(tmp_path / "a")], terminal_width=200)
    assert info.exit_code == 0 and "eval during training" in info.output and "step 10; latest of 2" in info.output
    out = tmp_path / "cmp.png"
    cmp = CliRunner().invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--key", "toy2d.kl", "--key", "kl", "--out", str(out)])
    assert cmp.exit_code == 0, cmp.output
    assert out.is_file()


def test_the_train_flags_set_the_evaluation(tmp_path):
    result = CliRunner().invoke(app, ["train", "--eval-every", "250", "--eval", "toy2d", "--eval", "likelihood", "--dry-run", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    train = json.loads(result.stdout)["train"]
    assert (train["eval_every"], train["eval"]) == (250, ["toy2d", "likelihood"])


def test_metric_option_types_are_checked_before_the_metric_runs(tmp_path, one_thread):
    run = tmp_path / "run"
    _train(run, steps=2)
    for metric, option, expected in [
        ("likelihood", "samples=abc", "metric 'likelihood' option samples = 'abc' has the wrong type; expected int"),  # an option of evaluate_likelihood
        ("toy2d", "num_samples=many", "metric 'toy2d' option num_samples = 'many' has the wrong type; expected int"),
    ]:
        result = CliRunner().invoke(app, ["eval", "metric", metric, str(run), "--option", option])
        assert result.exit_code == 2 and expected in " ".join(result.output.split()) and "Traceback" not in result.output, result.output
    with pytest.raises(EvaluationError, match="option num_samples = 'many' has the wrong type"):  # the same check during training
        _train(tmp_path / "during", steps=2, **{"train.eval_every": 1, "train.eval_options": {"toy2d": {**SMALL_TOY2D, "num_samples": "many"}}})


def test_paths_in_eval_options_are_saved_absolute(tmp_path, monkeypatch):
    """A run resumed from another working directory found its classifier no more (relative path)."""
    from genvae.core.run import resolve

    monkeypatch.chdir(tmp_path)
    (tmp_path / "clf").mkdir()
    (tmp_path / "8gaussians").mkdir()  # a folder named like a dataset: the name stays the dataset
    options = {"fid": {"feature_weights": "clf", "ref": "stats-not-made-yet.npz", "num_samples": 100}, "ood": {"out": "8gaussians"}}
    cfg, _ = resolve({"data": {"name": "digits"}, "train": {"eval_every": 10, "eval": ["fid", "ood"], "eval_options": options}})
    assert cfg.train.eval_options == {"fid": {"feature_weights": str(tmp_path / "clf"), "ref": "stats-not-made-yet.npz", "num_samples": 100},
                                      "ood": {"out": "8gaussians"}}
