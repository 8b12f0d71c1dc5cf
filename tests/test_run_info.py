"""`genvae info RUN`: a run's settings, progress, next step, last losses and evaluations."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genvae.cli import app
from genvae.core.checkpoint import RESTORE, append_metrics_record
from genvae.core.run import load_run
from genvae.errors import RunDirError
from genvae.run_info import format_info, run_info


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result, " ".join(result.output.split())


@pytest.fixture
def run_copy(digits_run_dir, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(digits_run_dir, path)
    shutil.rmtree(path / "metrics", ignore_errors=True)  # other tests record evaluations in the shared run
    return path


def test_a_finished_run(run_copy):
    info = run_info(run_copy)
    assert info["steps_trained"] == info["steps_total"] == 5 and info["state"].startswith("finished")
    assert "--resume --steps N" in info["next"]
    assert (info["objective"]["name"], info["arch"]["name"], info["data"]["name"]) == ("vae", "mlp", "digits")
    loaded = load_run(run_copy)
    for role, module in (("encoder", loaded.encoder), ("decoder", loaded.decoder)):
        assert info["parameters"][role] == sum(p.numel() for p in module.parameters())
    assert info["metrics"] == {}


def test_progress_of_an_unfinished_run_and_of_one_without_checkpoint(run_copy):
    config = json.loads((run_copy / "config.json").read_text())
    config["train"]["steps"] = 12  # as if stopped after the checkpoint at step 5
    (run_copy / "config.json").write_text(json.dumps(config))
    (run_copy / "log.jsonl").write_text('{"step": 5, "loss_vae": 1.5}\n{"step": 6, "loss_v')  # a line cut by a kill
    info = run_info(run_copy)
    assert info["state"] == "checkpoint at step 5 of 12"
    assert info["next"].startswith(f"genvae train --run-dir {run_copy} --resume") and "--steps" not in info["next"]
    assert info["last_log"] == {"step": 5, "loss_vae": 1.5} and info["last_log_age_s"] >= 0
    shutil.rmtree(run_copy / "checkpoint")
    info = run_info(run_copy)  # its exports show the lost checkpoint
    assert info["steps_trained"] is None and info["state"] == "trained to step 5, but its checkpoint folder is missing or damaged"
    for part in ("encoder", "decoder"):  # as a run stopped before its first checkpoint is
        shutil.rmtree(run_copy / part)
    info = run_info(run_copy)
    assert info["steps_trained"] is None and info["state"] == "no checkpoint yet (logged up to step 5)"
    assert "starts from step 0" in info["next"]


def test_evaluations_show_the_latest_numbers_and_how_many(run_copy):
    append_metrics_record(run_copy, "ood.jsonl", {"auroc": 0.91, "score": "elbo", "samples": 5, "seconds": 3.5})
    append_metrics_record(run_copy, "ood.jsonl", {"auroc": 0.93, "mean_ood": -500.25, "beta_rec": 1.0, "seconds": 4.0})
    info = run_info(run_copy)
    assert info["metrics"] == {"ood": {"evaluations": 2, "latest": {"auroc": 0.93, "mean_ood": -500.25}, "settings": {}}}
    # what the latest was of, and the step of the weights it scored: older than the run's checkpoint (step 5)
    append_metrics_record(run_copy, "ood.jsonl", {"auroc": 0.5, "out": "digits", "score": "elbo", "in": "(run's data)", "step": 3})
    info = run_info(run_copy)
    assert info["metrics"]["ood"] == {"evaluations": 3, "latest": {"auroc": 0.5}, "settings": {"out": "digits", "score": "elbo"}, "step": 3}
    row = dict(format_info(info))["eval ood"]
    assert row == "auroc 0.5 (out digits, score elbo; step 3, older than the checkpoint of step 5; latest of 3)"


def test_the_command_prints_the_rows_and_json(run_copy):
    append_metrics_record(run_copy, "likelihood.jsonl", {"iwae": -123.456})
    result, text = invoke("info", run_copy)
    assert result.exit_code == 0, text
    for expected in ("objective vae (", "arch mlp (", "data digits", "training finished: 5 of 5 steps", "eval likelihood iwae -123.5 (latest of 1)"):
        assert expected in text
    result, _ = invoke("info", run_copy, "--json")
    printed, expected = json.loads(result.output), json.loads(json.dumps(run_info(run_copy)))
    # the log's age is read from the clock at each call: it may differ by a rounding step
    assert abs(printed.pop("last_log_age_s") - expected.pop("last_log_age_s")) < 5
    assert result.exit_code == 0 and printed == expected


def test_a_directory_of_runs_names_them(run_copy, tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(run_copy, bench / "runs" / "vae")
    with pytest.raises(RunDirError, match=r"is not a run directory itself but holds runs: .*bench/runs/vae"):
        run_info(bench)
    result, text = invoke("sample", bench, "--num-samples", 2)  # every command that opens a run says the same
    assert result.exit_code == 2 and "holds runs" in text
    result, text = invoke("info", tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in text


def test_a_2d_bench_output_is_named_as_one_with_its_cells(tmp_path):
    """table2 / stability / collapse write cells, not runs: info and compare say so, not 'train one'."""
    kept = Path(__file__).resolve().parents[1] / "docs" / "results" / "table2" / "paper4" / "cells" / "rings-soft-intro"
    out = tmp_path / "table2"
    shutil.copytree(kept, out / "cells" / "rings-soft-intro")
    (out / "cells" / "8gaussians-vae").mkdir()
    (out / "cells" / "8gaussians-vae" / "settings.json").write_text("{}")  # a cell still training
    for command in ("info", "compare"):
        result, text = invoke(command, out)
        assert result.exit_code == 2 and "is a bench's output, not a run: its cells" in text, text
        assert "8gaussians-vae" in text and "rings-soft-intro" in text and "'genvae eval' take a finished cell" in text


def test_a_directory_of_runs_gets_one_line_per_run(run_copy, tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(run_copy, bench / "runs" / "vae")
    shutil.copytree(run_copy, bench / "more" / "unfinished")
    shutil.rmtree(bench / "more" / "unfinished" / "checkpoint")
    append_metrics_record(bench / "runs" / "vae", "ood.jsonl", {"auroc": 0.875})
    result, text = invoke("info", bench)
    assert result.exit_code == 0 and "2 runs in" in text
    assert "unfinished │ vae │ mlp │ digits │ - / 5" in text and "vae │ vae │ mlp │ digits │ 5 / 5 │ ood auroc 0.875" in text
    result, _ = invoke("info", bench, "--json")
    assert [Path(r["run"]).parts[-2:] for r in json.loads(result.output)] == [("more", "unfinished"), ("runs", "vae")]


def test_a_damaged_run_is_shown_as_damaged_and_does_not_stop_a_listing(run_copy, tmp_path):
    bench = tmp_path / "bench"
    for name in ("garbled", "good", "truncated"):
        shutil.copytree(run_copy, bench / name)
    weights = bench / "truncated" / "decoder" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    (bench / "garbled" / "checkpoint" / "trainer.json").write_text("{bad")
    (bench / "stranger").mkdir()
    (bench / "stranger" / "config.json").write_text('{"name": "not a genvae run"}')  # valid JSON, no run's sections
    info = run_info(bench / "truncated")
    assert info["parameters"]["decoder"] is None and info["parameters"]["encoder"] > 0
    twin = bench / "truncated" / "checkpoint" / "decoder" / "model.safetensors"
    assert info["damaged"] == {"decoder": f"{weights} is unreadable (truncated or not a safetensors file); copy {twin} over it (the same file, saved with the last checkpoint), or {RESTORE}"}
    result, text = invoke("info", bench / "truncated")
    assert result.exit_code == 0 and "decoder unreadable" in text and f"damaged {weights} is unreadable" in text, text
    result, text = invoke("info", bench)
    assert result.exit_code == 0 and "4 runs in" in text, text
    assert "stranger │ - │ - │ - │ - │ unreadable; genvae info" in text, text
    assert "good │ vae │ mlp │ digits │ 5 / 5 │" in text
    assert "truncated │ vae │ mlp │ digits │ 5 / 5 │ damaged: decoder/model.safetensors; genvae info" in text
    assert "garbled │ - │ - │ - │ - │ unreadable; genvae info" in text
    result, _ = invoke("info", bench, "--json")
    garbled = json.loads(result.output)[0]
    assert garbled["run"] == str(bench / "garbled") and "trainer.json is not valid JSON" in garbled["error"]


def test_an_evaluation_records_the_step_of_the_weights_it_scored(run_copy):
    from genvae.plugins.metrics.likelihood import evaluate

    run = load_run(run_copy)
    assert run.step == 5  # the exported networks are those of the checkpoint at step 5
    result = evaluate(run, n=8, samples=2)
    assert result["step"] == 5 and json.loads((run_copy / "metrics" / "likelihood.jsonl").read_text())["step"] == 5


def test_loading_a_run_that_is_being_trained_says_which_step_it_uses(run_copy):
    from genvae.core.run_lock import RunLock, training_process

    assert training_process(run_copy) is None
    lock = RunLock(run_copy)
    lock.acquire()  # as a trainer holds it (a second open of the file conflicts, even in one process)
    try:
        assert training_process(run_copy).startswith(f"pid {os.getpid()} on ")
        with pytest.warns(UserWarning, match=r"is being trained by pid \d+ on .*: this uses its checkpoint of step 5; later steps are not in it"):
            load_run(run_copy)
    finally:
        lock.release()
    assert training_process(run_copy) is None


def test_a_run_without_a_checkpoint_yet_is_one_clear_line(run_copy):
    for name in ("checkpoint", "encoder", "decoder"):
        shutil.rmtree(run_copy / name)
    with pytest.raises(RunDirError, match=r"has no checkpoint yet: it has not been trained; the first is written at step \d+ \(train.checkpoint_every\) and at the end"):
        load_run(run_copy)


def test_a_kept_bench_cell_is_sampled_and_evaluated_like_a_run(tmp_path):
    """Table 2's kept cells hold seed 0's networks: evaluating them gives back seed 0's numbers."""
    import genvae

    kept = Path(__file__).resolve().parents[1] / "docs" / "results" / "table2" / "paper4" / "cells" / "rings-soft-intro"
    cell = tmp_path / "cell"
    shutil.copytree(kept, cell)
    run = load_run(cell)
    assert run.step == 30_000 and run.config.objective["name"] == "soft-intro" and run.config.data["name"] == "rings"
    metrics = genvae.evaluate(run, "toy2d", figures=False, out_dir=tmp_path / "eval")
    seed0 = json.loads((cell / "result.json").read_text())["members"][0]
    assert (metrics["kl"], metrics["jsd"]) == pytest.approx((seed0["kl"], seed0["jsd"]), rel=1e-6)
    with pytest.raises(RunDirError, match=r"is a bench cell \(seed 0's networks of a batched model\), not a run: 'genvae sample' and 'genvae eval' take it"):
        run_info(cell)
