"""What an installed genvae needs beyond the checkout: its Python versions, its metadata, and no
paths that only make sense in the repository."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from genvae.core import config
from genvae.core.config import tomllib  # tomli on Python 3.10
from genvae.plugins.datasets import image_source

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_config_reads_toml_through_tomli_on_python_310(monkeypatch):
    """requires-python says 3.10, whose standard library has no tomllib: the config module takes
    the same parser from the tomli package there (a dependency for Python < 3.11)."""
    monkeypatch.setattr(sys, "version_info", (3, 10, 14, "final", 0))
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` fails, as on 3.10
    monkeypatch.setitem(sys.modules, "tomli", tomllib)  # tomli is where tomllib came from: the same API
    spec = importlib.util.spec_from_file_location("genvae_config_as_on_310", config.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    assert module.tomllib is tomllib
    assert module.parse_key_value("optim.milestones=[100,200]") == ("optim.milestones", [100, 200])


def test_tomli_is_a_dependency_below_python_311():
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"
    assert "tomli>=1.1; python_version < '3.11'" in PYPROJECT["project"]["dependencies"]


def test_license_is_an_spdx_expression():
    """setuptools deprecates the `license = { text = ... }` table and stops building it in 2027."""
    assert PYPROJECT["project"]["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in PYPROJECT["project"].get("classifiers", []))  # not both


def test_installed_package_looks_for_data_beside_no_checkout(tmp_path, monkeypatch):
    """The default data folders include ../shared/data beside the checkout genvae runs from, and
    none inside a virtual environment's lib/ when genvae is installed."""
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    monkeypatch.setattr(image_source, "__file__", str(site / "genvae" / "plugins" / "datasets" / "image_source.py"))
    dirs = image_source.shared_data_dirs("mnist")
    assert not any(str(d).startswith(str(tmp_path / "venv")) for d in dirs), dirs
    assert dirs[-1] == (tmp_path / "data" / "mnist").resolve()

    checkout = tmp_path / "src" / "genvae-checkout"
    (checkout / "genvae" / "plugins" / "datasets").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'genvae'\n")
    monkeypatch.setattr(image_source, "__file__", str(checkout / "genvae" / "plugins" / "datasets" / "image_source.py"))
    assert (tmp_path / "src" / "shared" / "data" / "mnist").resolve() in image_source.shared_data_dirs("mnist")
