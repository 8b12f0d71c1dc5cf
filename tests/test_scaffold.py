"""`genvae plugins new`: each kind's package installs, is found by its entry point and passes its
contract tests as written; bad names and existing folders are one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from genvae.cli import app
from genvae.scaffold import KINDS, plugin_files


def test_every_kind_installs_and_passes_its_contract_tests(tmp_path):
    packages = []
    for kind in KINDS:
        result = CliRunner().invoke(app, ["plugins", "new", f"my-{kind}", "--kind", kind, "--dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert f"pip install -e {tmp_path / f'genvae-my-{kind}'}" in result.output.replace("\n", "")
        packages.append(tmp_path / f"genvae-my-{kind}")
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation", "--target", str(site), *map(str, packages)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("GENVAE_DISABLE_PLUGIN_AUTOLOAD", "GENVAE_BLOCK_PLUGINS", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    tests = [str(p / "tests") for p in packages]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0 and "18 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]


def test_names_kinds_and_existing_folders_are_checked(tmp_path):
    files = plugin_files("kl-anneal", "objective")
    assert set(files) == {"pyproject.toml", "genvae_kl_anneal/__init__.py", "tests/test_kl_anneal.py", "README.md"}
    assert 'kl-anneal = "genvae_kl_anneal"' in files["pyproject.toml"]
    assert 'register("kl-anneal", KlAnneal)' in files["genvae_kl_anneal/__init__.py"]
    runner = CliRunner()
    for args, message in (
        (["My_VAE"], "use lowercase letters, digits and single hyphens"),
        (["ok", "--kind", "loss"], "--kind must be one of objective, architecture, dataset, metric"),
        (["vae"], "objective 'vae' is already registered by 'objectives.vae'; a plugin of that name would clash with it: choose another name"),
        (["digits", "--kind", "dataset"], "dataset 'digits' is already registered by 'datasets.images'"),
    ):
        result = runner.invoke(app, ["plugins", "new", *args, "--dir", str(tmp_path)])
        assert result.exit_code == 2 and message in result.output, result.output
    assert runner.invoke(app, ["plugins", "new", "twice", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["plugins", "new", "twice", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output
