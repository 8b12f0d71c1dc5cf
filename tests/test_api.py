"""The Python API (`genvae.train`, `genvae.load_run`) does what `genvae train` does."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import genvae
from genvae.cli import app
from genvae.errors import ConfigError, DataError, PluginError

SETTINGS = {"arch.hidden": 16, "objective.num_vae": 3, "train.log_every": 2, "train.figures_every": 0}


def test_train_from_python_equals_the_cli(tmp_path, one_thread):
    result = genvae.train(tmp_path / "api", objective="soft-intro", data="rings", steps=6, batch_size=32, settings=SETTINGS)
    assert result.step == result.steps_run == 6 and result.run_dir == tmp_path / "api"
    sets = [a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}")]
    cli = CliRunner().invoke(app, ["train", "--objective", "soft-intro", "--data", "rings", "--steps", "6", "--batch-size", "32",
                                   "--run-dir", str(tmp_path / "cli"), "--no-progress", *sets])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert json.loads((tmp_path / "api" / "config.json").read_text()) == json.loads((tmp_path / "cli" / "config.json").read_text())
    for role in ("encoder", "decoder"):
        api_weights, cli_weights = (load_file(tmp_path / d / role / "model.safetensors") for d in ("api", "cli"))
        assert all(torch.equal(api_weights[k], cli_weights[k]) for k in cli_weights)
    loaded = genvae.load_run(result.run_dir)
    decoded = loaded.models.decode(torch.zeros(4, loaded.models.z_dim))
    assert decoded.shape == (4, 2) and not decoded.requires_grad  # inference, without torch.no_grad()
    codes = np.zeros((4, loaded.models.z_dim))  # NumPy's float64, as a notebook has them
    assert torch.equal(loaded.models.decode(torch.from_numpy(codes)), decoded)
    mu, _ = loaded.models.encode(torch.from_numpy(np.ones((3, 2))))
    assert mu.shape == (3, loaded.models.z_dim) and mu.dtype == torch.float32
    with pytest.raises(DataError, match=r"encode takes a batch of shape \(N, 2\), the run's samples; got \(2,\): one sample, give x\[None\]"):
        loaded.models.encode(torch.ones(2))
    with pytest.raises(DataError, match=r"decode takes a batch of codes, shape \(N, 2\); got shape \(2,\): give z\[None\]"):
        loaded.models.decode(torch.zeros(loaded.models.z_dim))
    with pytest.raises(DataError, match=r"decode takes a batch of codes, shape \(N, 2\); got shape \(4, 3\)$"):
        loaded.models.decode(torch.zeros(4, 3))
    assert loaded.models.decode(np.zeros((4, 2))).shape == (4, 2)  # NumPy arrays too


def test_a_notebook_trains_again_in_another_precision_and_keeps_its_random_state(tmp_path, one_thread):
    """Accelerate keeps one precision per process: a second genvae.train in bf16 after an fp32 one
    raised "AcceleratorState has already been initialized"; and training left the caller's global
    generators seeded with the run's seed."""
    import random

    small = {"arch.hidden": 16, "train.figures_every": 0}
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    expected = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    first = genvae.train(tmp_path / "fp32", objective="vae", data="8gaussians", steps=2, batch_size=16, settings=small)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected  # as if training had not run
    second = genvae.train(tmp_path / "bf16", objective="vae", data="8gaussians", steps=2, batch_size=16, settings={**small, "train.precision": "bf16"})
    again = genvae.train(tmp_path / "fp32-again", objective="vae", data="8gaussians", steps=2, batch_size=16, settings=small)
    assert first.step == second.step == again.step == 2
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["train"]["precision"] == "bf16"
    assert all(torch.equal(a, b) for a, b in zip(*(load_file(tmp_path / d / "decoder" / "model.safetensors").values() for d in ("fp32", "fp32-again"))))


def test_per_sample_scores_from_python(tmp_path, one_thread):
    result = genvae.train(tmp_path / "run", objective="vae", data="8gaussians", steps=20, batch_size=64, settings={"arch.hidden": 16, "train.figures_every": 0})
    run = genvae.load_run(result.run_dir)
    x = run.data.test_batch(50).x
    scores = genvae.log_likelihood(run, x.numpy().astype(np.float64), samples=20)
    assert scores["elbo"].shape == scores["iwae"].shape == (50,) and scores["iwae"].dtype == torch.float64
    assert float((scores["iwae"] - scores["elbo"]).mean()) > 0  # the tighter bound, on average
    again = genvae.log_likelihood(result.run_dir, x, samples=20)  # a run directory too; seeded draws
    assert torch.allclose(again["iwae"], scores["iwae"]) and torch.allclose(again["elbo"], scores["elbo"])
    from genvae.plugins.metrics.ood import likelihood_scores

    direct = likelihood_scores(run.encoder, run.decoder, x, None, 20, "mse", float(run.config.objective["beta_rec"]), torch.Generator().manual_seed(0))
    assert torch.equal(direct["iwae"], scores["iwae"])  # the scores eval ood / eval likelihood use


def test_resume_from_python_and_its_errors(tmp_path, one_thread):
    run = tmp_path / "run"
    genvae.train(run, objective="vae", data="8gaussians", steps=4, batch_size=16, settings={"arch.hidden": 16, "train.figures_every": 0})
    result = genvae.train(run, steps=7, resume=True)
    assert (result.step, result.steps_run) == (7, 3)
    with pytest.warns(UserWarning, match=r"^already at step 7 of train.steps=5; nothing to train: give steps=N with N > 7$") as caught:
        assert genvae.train(run, steps=5, resume=True).steps_run == 0  # silent before, while the CLI said it
    assert caught[0].filename == __file__  # the caller's line, not genvae's
    with pytest.raises(ConfigError, match="objective.beta_kl cannot change"):
        genvae.train(run, steps=9, resume=True, settings={"objective.beta_kl": 2.0})
    with pytest.raises(ConfigError, match="resume=True needs run_dir"):
        genvae.train(steps=9, resume=True)
    with pytest.raises(ConfigError, match="'hidden' must be SECTION.KEY"):
        genvae.train(tmp_path / "other", settings={"hidden": 16})
    with pytest.raises(ConfigError, match="it belongs to arch: set arch.hidden instead"):
        genvae.train(tmp_path / "other", settings={"objective.hidden": 16})
    assert not (tmp_path / "other").exists()


def test_resume_after_the_data_folder_moved(tmp_path, one_thread):
    from PIL import Image

    (tmp_path / "faces").mkdir()
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), 60 * i, dtype=np.uint8)).save(tmp_path / "faces" / f"{i}.png")
    settings = {"data.path": str(tmp_path / "faces"), "data.resolution": 16, "arch.channels": [8], "train.figures_every": 0}
    run = tmp_path / "run"
    genvae.train(run, objective="vae", data="folder", steps=2, batch_size=2, settings=settings)
    (tmp_path / "faces").rename(tmp_path / "moved")
    with pytest.raises(DataError, match="faces does not exist; set data.path"):
        genvae.train(run, steps=3, resume=True)
    with pytest.warns(UserWarning, match=r"resume=True: data.path changes from .*faces to .*moved; the run continues on it as the same data, moved"):
        result = genvae.train(run, steps=3, resume=True, settings={"data.path": str(tmp_path / "moved")})
    assert result.step == 3
    assert json.loads((run / "config.json").read_text())["data"]["path"] == str(tmp_path / "moved")
    with pytest.raises(ConfigError, match=r"data.resolution cannot change .*where the data lies \(data.path, data.root\) can"):
        genvae.train(run, steps=4, resume=True, settings={"data.resolution": 32})
    (tmp_path / "moved").rename(tmp_path / "again")
    with pytest.warns(UserWarning, match="data.path changes"):
        assert genvae.train(run, steps=4, resume=True, data=str(tmp_path / "again")).step == 4  # --data DIR: where the folder lies now
    assert json.loads((run / "config.json").read_text())["data"] == {"name": "folder", "path": str(tmp_path / "again"), "resolution": 16, "hflip": False, "channels": 3, "labels": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same folder again: nothing to say
        assert genvae.train(run, steps=5, resume=True, data=str(tmp_path / "again")).step == 5


def test_evaluate_runs_a_metric_plugin_from_python(digits_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_run_dir, run)
    shutil.rmtree(run / "metrics", ignore_errors=True)
    result = genvae.evaluate(run, "likelihood", n=8, samples=2)
    assert result["step"] == 5 and math.isfinite(result["iwae"])
    assert json.loads((run / "metrics" / "likelihood.jsonl").read_text())["iwae"] == result["iwae"]  # recorded as by the command
    assert repr(genvae.load_run(run)) == f"LoadedRun({str(run)!r}: vae, mlp on digits (1, 16, 16), z_dim=4, step 5)"  # not every layer
    with pytest.raises(ConfigError, match="metric 'likelihood' has no option 'nn'"):
        genvae.evaluate(genvae.load_run(run), "likelihood", nn=8)
    with pytest.raises(PluginError, match="did you mean 'likelihood'"):
        genvae.evaluate(run, "likelyhood")
    assert {"train", "evaluate", "load_run", "Encoder", "hookimpl"} <= set(dir(genvae))  # the lazily imported names too


def test_default_run_directories_started_in_one_second_are_distinct(tmp_path, monkeypatch, one_thread):
    """Two runs of a seed sweep started together got the same default directory: the second was refused."""
    from genvae.api import default_run_dir

    monkeypatch.chdir(tmp_path)
    first, second = default_run_dir("vae", "mlp", "rings"), default_run_dir("vae", "mlp", "rings")
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name.startswith(first.name) and second.name[len(first.name):] in ("-2", "")  # or the next second


def cli_error(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize(
    "call, cli, python_words, cli_words",
    [
        (lambda run, tmp: genvae.train(run, data="digits"), ["train", "--run-dir", "{run}", "--data", "digits"],
         "already exists; pass resume=True to continue it, or choose another run_dir",
         "already exists; pass --resume to continue it, or choose another --run-dir"),
        (lambda run, tmp: genvae.train(steps=3, resume=True), ["train", "--steps", "3", "--resume"],
         "resume=True needs run_dir=RUN, the run to continue", "--resume needs --run-dir RUN, the run to continue"),
        (lambda run, tmp: genvae.train(tmp / "new", data="8gaussians", settings={"train.eval_options": {"ood": {"out": "mnist"}}}),
         ["train", "--run-dir", "{tmp}/new", "--data", "8gaussians", "--set", "train.eval_options={ood={out='mnist'}}"],
         "is not in train.eval; add it: settings={'train.eval': ['ood']}", "is not in train.eval; add it: --set train.eval=[ood]"),
        (lambda run, tmp: genvae.train(tmp / "new", data="points"), ["train", "--run-dir", "{tmp}/new", "--data", "points"],
         "the points dataset needs data.path, a file of rows (.npy, .npz, .csv, .tsv, .txt); or give data=FILE", "; or give --data FILE"),
        (lambda run, tmp: genvae.evaluate(run, "likelihood", n=0), ["eval", "likelihood", "{run}", "--num-images", "0"],
         "n must be at least 1, got 0", "--num-images must be at least 1, got 0"),
        (lambda run, tmp: genvae.evaluate(run, "ood"), ["eval", "metric", "ood", "{run}"],
         "out-of-distribution data: out=DATA (e.g. mnist; while training settings={'train.eval_options': {'ood': {'out': 'mnist'}}}",
         "out-of-distribution data: --out DATA (e.g. mnist; while training --set 'train.eval_options={ood={out=\"mnist\"}}'"),
        (lambda run, tmp: genvae.train(tmp / "new", data="8gaussians", settings={"objective.recon_loss": True}),
         ["train", "--run-dir", "{tmp}/new", "--data", "8gaussians", "--set", "objective.recon_loss=true"],
         "objective.recon_loss = True has the wrong type; expected str", "(a --set value is read as TOML, where true is not text"),
    ],
    ids=["run-exists", "resume-without-run-dir", "eval-options-without-eval", "points-without-path", "eval-n", "ood-without-out", "wrong-type"],
)
def test_messages_name_what_the_caller_passes(digits_run_dir, tmp_path, call, cli, python_words, cli_words):
    """The same mistake from Python names the argument (steps=, settings={...}, resume=True) and
    from the command line the flag."""
    with pytest.raises(genvae.errors.GenvaeError) as info:
        call(digits_run_dir, tmp_path)
    assert python_words in str(info.value) and "--" not in str(info.value).replace("'genvae eval metric ood RUN --option", "")
    assert cli_words in cli_error(*(a.replace("{run}", str(digits_run_dir)).replace("{tmp}", str(tmp_path)) for a in cli))
    with pytest.raises(genvae.errors.GenvaeError, match="--num-images must be"):  # outside the API: the CLI's words again
        from genvae.plugins.metrics.likelihood import evaluate_likelihood

        evaluate_likelihood(genvae.load_run(digits_run_dir), n=0)


def test_a_suggested_command_becomes_the_call_that_does_it():
    from genvae.errors import for_python

    assert for_python("continue with genvae train --run-dir 'runs/a b' --resume --set optim.lr=2e-05") == \
        "continue with genvae.train('runs/a b', resume=True, settings={'optim.lr': 2e-05})"
    assert for_python("set it with --set arch.z_dim=...; or --precision=no, --features=random-conv or --data FILE.npy") == \
        "set it with settings={'arch.z_dim': ...}; or settings={'train.precision': 'no'}, features='random-conv' or data=FILE.npy"
    assert for_python("e.g. --set train.eval=[ood] --set 'train.eval_options={ood={n=20}}' (metrics: ...)") == \
        "e.g. settings={'train.eval': ['ood'], 'train.eval_options': {'ood': {'n': 20}}} (metrics: ...)"
    assert for_python("for image runs use 'genvae eval fid' or 'genvae eval ood'") == \
        "for image runs use genvae.evaluate(run, 'fid') or genvae.evaluate(run, 'ood')"
    quoted = "make one with 'genvae eval train-classifier DATA --out DIR' (a few minutes)"
    assert for_python(quoted) == quoted  # a command of the CLI alone stays one
    assert for_python("a --set value is read as TOML; --where out=mnist") == "a --set value is read as TOML; --where out=mnist"


def test_uint8_images_are_taken_as_train_takes_them(digits_run_dir):
    """genvae.train(data=uint8 images) worked, but encode and log_likelihood of the same array
    raised "expected scalar type Byte but found Float"."""
    run = genvae.load_run(digits_run_dir)
    pixels = (run.data.test_batch(6).x * 255).round().to(torch.uint8)
    scaled = pixels.float() / 255
    assert torch.equal(run.models.encode(pixels.numpy())[0], run.models.encode(scaled)[0])
    assert torch.equal(genvae.log_likelihood(run, pixels)["iwae"], genvae.log_likelihood(run, scaled)["iwae"])
    with pytest.raises(DataError, match=r"images are floats in \[0, 1\] or uint8 \(0-255\); got torch.int64: give x.float\(\) / 255"):
        run.models.encode(pixels.long())


def test_an_array_run_without_held_out_images_says_how_to_hold_some_out(tmp_path, one_thread):
    """The warning told users of genvae.train(data=array) to put held-out images "in another folder"."""
    images = np.random.default_rng(0).random((40, 8, 8))
    genvae.train(tmp_path / "run", objective="vae", data=images, steps=2, batch_size=8, settings={"train.figures_every": 0})
    with pytest.warns(UserWarning, match=r"no held-out split: its 'test' images are the training ones; hold images out with "
                                         r"settings={'data.test_fraction': F} when training, or evaluate other data$"):  # fmt: skip
        genvae.evaluate(tmp_path / "run", "likelihood", n=8, samples=2)


def test_every_flag_in_a_message_the_api_can_raise_has_its_python_name():
    """A new message naming a flag that genvae.errors.PYTHON_NAMES lacks would reach notebook
    users as a CLI flag."""
    import ast
    import re
    from pathlib import Path

    from genvae.errors import PYTHON_NAMES

    root = Path(genvae.__file__).parent
    flags = set()
    for path in [root / "api.py", *(root / "core").glob("*.py"), *(root / "plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Raise, ast.Assign, ast.Return)) or (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "warn"):
                texts = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                flags |= {flag for text in texts for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)}
    assert {"--run-dir", "--resume", "--num-samples"} <= flags  # the scan sees them
    assert flags - set(PYTHON_NAMES) - {"--set", "--option"} == set()  # --set has its own rule; --option is in quoted commands


def test_genvae_errors_is_there_after_a_bare_import():
    """'except genvae.errors.ConfigError' in a fresh notebook raised AttributeError: the lazy
    package had not imported the module yet."""
    import subprocess
    import sys

    code = "import genvae; print(genvae.errors.ConfigError.__name__, 'errors' in dir(genvae))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["ConfigError", "True"], result.stderr
