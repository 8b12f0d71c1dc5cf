"""The documentation site builds with warnings as errors (mkdocs.yml: strict), as in CI."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from genvae.core import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("genvae_")]


def load_readme_hook():
    spec = importlib.util.spec_from_file_location("docs_readme_hook", ROOT / "docs" / "_hooks" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_links_are_rewritten_for_the_site():
    hook = load_readme_hook()
    text = "# genvae\n\nSee [the guide](docs/user-guide.md), ![s](docs/images/a.png), [a file](benchmarks/x.py), [web](https://x.org/a) [top](#top)\n"
    assert hook.readme_for_docs(text) == (
        "\nSee [the guide](user-guide.md), ![s](images/a.png), a file (`benchmarks/x.py`), [web](https://x.org/a) [top](#top)\n"
    )


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (pip install -e '.[dev]')")
def test_mkdocs_build_strict(tmp_path):
    # no --quiet: it raises the log level above WARNING, and strict mode then counts no warnings
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    hooks_page = (site / "hooks" / "index.html").read_text(encoding="utf-8")
    assert all(hook in hooks_page for hook in HOOKS), "the hook reference must show every hook of genvae/core/hookspecs.py"
    assert "ObjectiveContract" in (site / "api" / "index.html").read_text(encoding="utf-8")
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "make demo" in home and "<!-- README -->" not in home  # the README is included
