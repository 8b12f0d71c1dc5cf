"""docs/plugin-tutorial.md is real: its files are written out, pip-installed and their tests run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "plugin-tutorial.md"
FILE_BLOCK = re.compile(r"^<!-- file: (\S+) -->\n```[a-z]*\n(.*?)^```$", flags=re.M | re.S)


def tutorial_files() -> dict[str, str]:
    return {path: code for path, code in FILE_BLOCK.findall(TUTORIAL.read_text(encoding="utf-8"))}


def test_the_tutorial_names_every_file_of_its_layout():
    files = tutorial_files()
    assert sorted(files) == ["genvae-klwarmup/genvae_klwarmup/__init__.py", "genvae-klwarmup/pyproject.toml", "genvae-klwarmup/tests/test_klwarmup.py"]
    text = TUTORIAL.read_text(encoding="utf-8")
    assert "pip install -e ." in text and "pytest -q tests" in text


def test_the_tutorial_package_installs_and_passes_its_tests(tmp_path):
    for path, code in tutorial_files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code, encoding="utf-8")
    package, site = tmp_path / "genvae-klwarmup", tmp_path / "site"
    # a real build and install of the package (into a folder, so the test leaves the environment alone)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation", "--target", str(site), str(package)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("GENVAE_DISABLE_PLUGIN_AUTOLOAD", "GENVAE_BLOCK_PLUGINS", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    # as the reader runs it: `pytest -q tests` in the package folder (with the plugin found by its entry point)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=package, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0 and "7 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
