"""`genvae compare`: the curves of several runs in one picture and their last logged values."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from genvae.cli import app
from genvae.compare import compare_runs, run_labels
from genvae.errors import ConfigError, RunDirError
from genvae.viz.curves import plot_losses, read_records


def make_run(digits_run_dir, path, records):
    shutil.copytree(digits_run_dir, path)
    (path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def two_runs(digits_run_dir, tmp_path):
    a = make_run(digits_run_dir, tmp_path / "a" / "run", [{"step": 1, "rec": 9.0, "kl": 1.0}, {"step": 2, "rec": 7.5, "kl": 1.5}])
    b = make_run(digits_run_dir, tmp_path / "b" / "run", [{"step": 1, "rec": 8.0, "kl": 2.0}, {"step": 3, "rec": 6.25, "kl": 2.5, "lr": 0.1}])
    return a, b


def test_last_values_figure_and_labels(two_runs, tmp_path):
    result = compare_runs(two_runs, tmp_path / "cmp.png", ["rec"])
    assert result["keys"] == ["rec"]
    assert result["runs"] == [
        {"run": "a/run", "objective": "vae", "data": "digits", "step": 2, "rec": 7.5, "logged_at": {}},
        {"run": "b/run", "objective": "vae", "data": "digits", "step": 3, "rec": 6.25, "logged_at": {}},
    ]
    assert result["warnings"] == []
    assert Image.open(tmp_path / "cmp.png").size[0] > 100
    assert compare_runs(two_runs, tmp_path / "all.png")["keys"] == ["kl", "rec"]  # every logged value but step / lr / speed
    assert run_labels([tmp_path / "x" / "run", tmp_path / "y" / "other"]) == ["run", "other"]


def test_one_line_errors(two_runs, tmp_path):
    with pytest.raises(ConfigError, match="no run logs or has evaluated .kl_class.; give --key one of: kl, lr, rec$"):
        compare_runs(two_runs, tmp_path / "c.png", ["kl_class"])
    with pytest.raises(ConfigError, match="at least two runs"):
        compare_runs(two_runs[:1], tmp_path / "c.png")
    assert [r["run"] for r in compare_runs([tmp_path], tmp_path / "c.png")["runs"]] == ["a/run", "b/run"]  # a directory of runs: all of them
    with pytest.raises(ConfigError, match="the same run is given twice"):
        compare_runs([two_runs[0], two_runs[0]], tmp_path / "c.png")


def test_the_command_prints_the_table(two_runs, tmp_path):
    result = CliRunner().invoke(app, ["compare", *map(str, two_runs), "-k", "kl", "--out", str(tmp_path / "c.png")], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    assert "a/run │ vae │ digits │ 2 │ 1.5" in text and "b/run │ vae │ digits │ 3 │ 2.5" in text and "wrote" in text


def test_a_value_last_logged_before_the_last_step_says_when(digits_run_dir, tmp_path):
    warm_up = [{"step": 100, "loss_vae": 0.5, "rec": 2.0}, {"step": 600, "loss_encoder": 0.25, "rec": 1.5}]  # soft-intro after num_vae=100
    runs = [make_run(digits_run_dir, tmp_path / name, warm_up) for name in ("a", "b")]
    result = compare_runs(runs, tmp_path / "c.png", ["loss_vae", "rec"])
    assert result["runs"][0] == {"run": "a", "objective": "vae", "data": "digits", "step": 600, "loss_vae": 0.5, "rec": 1.5, "logged_at": {"loss_vae": 100}}
    result = CliRunner().invoke(app, ["compare", *map(str, runs), "-k", "loss_vae", "-k", "rec", "--out", str(tmp_path / "c.png")], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "run ┃ objective ┃ data ┃ last step ┃ loss_vae ┃ rec" in text and "a │ vae │ digits │ 600 │ 0.5 (step 100) │ 1.5" in text, text


def test_out_must_name_a_picture_format_and_its_folder_is_made(two_runs, tmp_path):
    with pytest.raises(ConfigError, match=r"--out 'cmp.txt' is not a picture format; end it in one of .*\.pdf, .*\.png, .*\.svg"):
        compare_runs(two_runs, tmp_path / "cmp.txt")
    result = CliRunner().invoke(app, ["compare", *map(str, two_runs), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 2 and "error: --out 'cmp' is not a picture format" in result.output and "Traceback" not in result.output
    out = tmp_path / "new" / "folder" / "cmp.pdf"
    assert compare_runs(two_runs, out)["figure"] == str(out) and out.read_bytes().startswith(b"%PDF")


def test_a_torn_last_line_is_skipped(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "rec": 2.0}\n{"step": 2, "rec": 1.5}\n{"step": 3, "re')
    assert read_records(log) == [{"step": 1, "rec": 2.0}, {"step": 2, "rec": 1.5}]
    assert plot_losses(log, tmp_path / "losses.png") == tmp_path / "losses.png"


def test_off_a_terminal_the_table_is_as_wide_as_it_needs(digits_run_dir, tmp_path):
    """Piped (`genvae compare ... | cat`), rich's 80 columns broke numbers across lines."""
    record = {f"value_{i}": 1.0 + i / 3 for i in range(9)}
    runs = [make_run(digits_run_dir, tmp_path / name, [{"step": 1, **record}]) for name in ("first", "second")]
    result = CliRunner().invoke(app, ["compare", *map(str, runs), "--out", str(tmp_path / "c.png")], env={"COLUMNS": None})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and all("1.333" in row and "3.667" in row for row in rows), result.output


def test_runs_on_different_data_are_pointed_out(two_runs, tmp_path):
    config = json.loads((two_runs[1] / "config.json").read_text())
    config["data"] = {"name": "folder", "path": "/data/my-images", "resolution": 16, "hflip": False, "channels": 1, "labels": False}
    (two_runs[1] / "config.json").write_text(json.dumps(config))
    result = compare_runs(two_runs, tmp_path / "c.png", ["rec"])
    assert [r["data"] for r in result["runs"]] == ["digits", "folder (my-images, resolution 16, channels 1)"]
    assert result["warnings"] == ["the runs were trained on different data (digits, folder (my-images, resolution 16, channels 1)): their losses are not on one scale"]
    text = " ".join(CliRunner().invoke(app, ["compare", *map(str, two_runs), "--out", str(tmp_path / "c.png")], env={"COLUMNS": "300"}).output.split())
    assert "warning: the runs were trained on different data" in text


def test_a_feature_classifier_beside_runs_is_no_run(two_runs, tmp_path):
    clf = tmp_path / "clf"
    clf.mkdir()
    (clf / "config.json").write_text(json.dumps({"features": "classifier", "network": "x", "data": "digits", "num_classes": 10}))
    assert [r["run"] for r in compare_runs([tmp_path], tmp_path / "c.png")["runs"]] == ["a/run", "b/run"]  # left out of a directory
    result = CliRunner().invoke(app, ["compare", str(two_runs[0]), str(clf), "--out", str(tmp_path / "c.png")], env={"COLUMNS": "300"})
    text = " ".join(result.output.split())
    assert result.exit_code != 0 and "Traceback" not in text
    assert f"error: {clf} is a feature classifier (written by 'genvae eval train-classifier'; give it to --feature-weights), not a genvae run" in text
    info = " ".join(CliRunner().invoke(app, ["info", str(clf)], env={"COLUMNS": "300"}).output.split())
    assert "is a feature classifier" in info and "restore it from a backup" not in info


def _sweep(digits_run_dir, tmp_path):
    """Four runs: beta_neg 32 and 256, seeds 0 and 1, each with an OOD evaluation recorded."""
    from genvae.core.checkpoint import append_metrics_record

    runs = []
    for beta_neg, seed, rec, auroc in ((32, 0, 2.0, 0.80), (32, 1, 4.0, 0.90), (256, 0, 1.0, 0.95), (256, 1, 1.5, 0.97)):
        run = make_run(digits_run_dir, tmp_path / "sweep" / f"b{beta_neg}-s{seed}", [{"step": 5, "rec": rec}])
        shutil.rmtree(run / "metrics", ignore_errors=True)
        config = json.loads((run / "config.json").read_text())
        config["objective"]["beta_neg"], config["train"]["seed"] = beta_neg, seed
        (run / "config.json").write_text(json.dumps(config))
        append_metrics_record(run, "ood.jsonl", {"auroc": 0.5, "out": "digits"})  # an earlier sanity check
        append_metrics_record(run, "ood.jsonl", {"auroc": auroc, "out": "mnist", "score": "elbo", "seconds": 3.0})
        runs.append(run)
    return runs


def test_evaluations_are_columns_and_seeds_are_summarised(digits_run_dir, tmp_path):
    _sweep(digits_run_dir, tmp_path)
    assert compare_runs([tmp_path / "sweep"], tmp_path / "d.png")["evaluations"] == ["ood.auroc"]  # named with --key only
    result = compare_runs([tmp_path / "sweep"], tmp_path / "c.png", ["rec", "ood.auroc"])
    assert [(r["run"], r["rec"], r["ood.auroc"]) for r in result["runs"]] == [
        ("b256-s0", 1.0, 0.95), ("b256-s1", 1.5, 0.97), ("b32-s0", 2.0, 0.80), ("b32-s1", 4.0, 0.90)]  # the latest evaluation
    grouped = compare_runs([tmp_path / "sweep"], tmp_path / "c.png", ["rec", "ood.auroc"], group_by=["objective.beta_neg"])
    assert [g["objective.beta_neg"] for g in grouped["groups"]] == [32, 256]  # by value
    by_beta = {g["objective.beta_neg"]: g for g in grouped["groups"]}
    assert by_beta[32]["rec"] == (3.0, pytest.approx(2**0.5), 2) and by_beta[256]["ood.auroc"][0] == pytest.approx(0.96)
    assert by_beta[256]["runs"] == ["b256-s0", "b256-s1"]
    only_evaluated = compare_runs([tmp_path / "sweep"], tmp_path / "e.png", ["ood.auroc"])
    assert only_evaluated["figure"] is None and not (tmp_path / "e.png").exists()  # no curve to draw
    with pytest.raises(ConfigError, match=r"--group-by 'objective.beta' is no setting of these runs; settings: .*objective.beta_neg"):
        compare_runs([tmp_path / "sweep"], tmp_path / "c.png", group_by=["objective.beta"])
    assert grouped["warnings"] == []
    from genvae.core.checkpoint import append_metrics_record

    append_metrics_record(tmp_path / "sweep" / "b32-s1", "ood.jsonl", {"auroc": 1.0, "out": "fashion-mnist", "score": "elbo"})  # scored against other data
    mixed = compare_runs([tmp_path / "sweep"], tmp_path / "c.png", ["ood.auroc"], group_by=["objective.beta_neg"])
    assert mixed["warnings"] == ["the runs' latest ood evaluations are of different settings (out fashion-mnist, score elbo / out mnist, score elbo): "
                                 "evaluate them alike to compare, or pick one with --where out=VALUE"]
    picked = compare_runs([tmp_path / "sweep"], tmp_path / "c.png", ["ood.auroc"], group_by=["objective.beta_neg"], where=["out=mnist"])
    assert picked["warnings"] == [] and [g["ood.auroc"][0] for g in picked["groups"]] == [pytest.approx(0.85), pytest.approx(0.96)]  # b32-s1's mnist record
    digits = compare_runs([tmp_path / "sweep"], tmp_path / "c.png", ["ood.auroc", "rec"], where=["out=digits"])
    assert [r["ood.auroc"] for r in digits["runs"]] == [0.5] * 4 and digits["runs"][0]["rec"] == 1.0  # logged values are not filtered
    with pytest.raises(ConfigError, match=r"no run logs or has evaluated 'ood.auroc' \(evaluations of out=cifar10\); give --key one of: .*; or evaluate the runs first \(genvae eval ood RUN\)$"):
        compare_runs([tmp_path / "sweep"], tmp_path / "c.png", ["ood.auroc"], where=["out=cifar10"])
    with pytest.raises(ConfigError, match=r"--where 'data=mnist': give SETTING=VALUE with a setting of out, score, ref, split"):
        compare_runs([tmp_path / "sweep"], tmp_path / "c.png", ["ood.auroc"], where=["data=mnist"])
    from genvae.compare import names_the_same

    assert names_the_same("mnist:split=test", "mnist") and names_the_same("mnist:split=test", "mnist:split=test")  # as eval ood records it
    assert names_the_same("image-array:/data/ood.npy", "ood.npy") and names_the_same("image-array:path=ood.npy", "/elsewhere/ood.npy")
    assert not names_the_same("fashion-mnist:split=test", "mnist") and not names_the_same("image-array:/data/ood.npy", "other.npy")
    with pytest.raises(ConfigError, match="--where out= given twice"):
        compare_runs([tmp_path / "sweep"], tmp_path / "c.png", ["ood.auroc"], where=["out=mnist", "out=digits"])


def test_a_damaged_run_among_a_directorys_is_left_out(digits_run_dir, tmp_path):
    """compare DIR stopped at one unreadable run, where info DIR lists it and carries on."""
    _sweep(digits_run_dir, tmp_path)
    (tmp_path / "sweep" / "b32-s1" / "config.json").write_text("{not json")
    result = compare_runs([tmp_path / "sweep"], tmp_path / "c.png", ["rec"])
    assert [r["run"] for r in result["runs"]] == ["b256-s0", "b256-s1", "b32-s0"]
    assert any(w.startswith(f"{tmp_path / 'sweep' / 'b32-s1'} left out:") for w in result["warnings"])
    with pytest.raises(RunDirError):  # named on its own, its problem is the answer
        compare_runs([tmp_path / "sweep" / "b32-s1", tmp_path / "sweep" / "b32-s0"], tmp_path / "c.png", ["rec"])


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "table"])
def test_the_summary_prints_for_a_paper_or_a_script(digits_run_dir, tmp_path, fmt):
    import csv
    import io

    _sweep(digits_run_dir, tmp_path)
    args = ["compare", str(tmp_path / "sweep"), "-k", "ood.auroc", "-k", "rec", "--group-by", "objective.beta_neg", "--format", fmt,
            "--out", str(tmp_path / "c.png")]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    if fmt == "md":
        lines = result.output.splitlines()
        assert lines[:2] == ["| objective.beta_neg | runs | ood.auroc | rec |", "| --- | --- | --- | --- |"]
        assert lines[2] == "| 32 | 2 | 0.85 ± 0.071 | 3 ± 1.4 |"
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(result.output)))
        assert rows[0] == ["objective.beta_neg", "runs", "ood.auroc mean", "ood.auroc std", "ood.auroc n", "rec mean", "rec std", "rec n"]
        assert [float(v) for v in rows[2]] == pytest.approx([256, 2, 0.96, 0.02**0.5 * 0.1, 2, 1.25, 0.125**0.5, 2])  # numbers, one per column
        per_run = list(csv.reader(io.StringIO(CliRunner().invoke(app, args[:6] + args[8:], env={"COLUMNS": "300"}).output)))
        assert per_run[0] == ["run", "objective", "data", "last step", "ood.auroc", "rec", "ood.auroc step", "rec step"]
        assert per_run[1][0] == "b256-s0" and float(per_run[1][4]) == 0.95 and float(per_run[1][5]) == 1.0
    elif fmt == "json":
        data = json.loads(result.output)
        assert data["groups"][0]["objective.beta_neg"] == 32 and data["groups"][0]["rec"] == [3.0, pytest.approx(2**0.5), 2]
    else:
        text = " ".join(result.output.split())
        assert "32 │ 2 │ 0.85 ± 0.071 │ 3 ± 1.4" in text and "wrote" in text
    bad = CliRunner().invoke(app, ["compare", str(tmp_path / "sweep"), "--format", "xlsx", "--out", str(tmp_path / "c.png")])
    assert bad.exit_code == 2 and "--format must be table, md, csv or json, got 'xlsx'" in bad.output
