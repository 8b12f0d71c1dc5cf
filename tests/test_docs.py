"""Documentation stays in step with the code (datasette's idea)."""

import inspect
import re
from pathlib import Path

import pytest

from genvae.core import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("genvae_")]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"### `{hook}({params})`" in DOCS.read_text(), f"document {hook}({params}) in {DOCS}"


def test_readme_starts_with_the_two_commands():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands = re.findall(r"^```(?:bash|sh)\n(.+?)\n```", readme, flags=re.M | re.S)
    assert commands[:2] == ["make demo", "make test"]


def test_the_user_guides_own_training_loop_runs_as_written(capsys):
    """The loop of "The objectives in your own training loop" trains Soft-IntroVAE through both phases."""
    import torch

    guide = (Path(__file__).resolve().parents[1] / "docs" / "user-guide.md").read_text()
    section = guide.split("### The objectives in your own training loop", 1)[1]
    code = re.search(r"```python\n(.+?)\n```", section, flags=re.S).group(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, "user-guide.md", "exec"), {})
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert printed.startswith("299 decoder ") and "kl_fake" in printed  # past the warm-up, both phases ran
