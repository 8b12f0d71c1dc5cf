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


# --------------------------------------------------------------------------------------------
# Every `genvae ...` command line the README and the docs show names a command and options that exist
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
COMMAND_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPTION = re.compile(r"(?<![\w.=/\\-])(--?[A-Za-z][\w-]*)")


def doc_command_lines(text: str) -> list[str]:
    """The `genvae ...` command lines of a Markdown text: those in ```bash blocks (continuation
    lines joined, comments dropped) and those in inline code spans (prose and tables)."""
    lines = []
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)
    for language, block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if language in ("bash", "sh") or (language in ("", "console") and line.startswith("$ ")):  # a plain block: its prompts
                lines.append(re.sub(r"\s#\s.*$", "", line))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    lines += re.findall(r"`([^`\n]+)`", prose)
    found = []
    for line in lines:
        match = re.search(r"(?:^|[\s$(])genvae ([a-z].*)$", line.replace("\\|", "|"))
        if match:
            found.append(" ".join(match.group(1).split()))
    return found


def cli_commands() -> dict[str, tuple[bool, set[str]]]:
    """Each command path of the CLI ('', 'train', 'eval', 'eval fid', ...): whether it is a group
    of commands, and its options (every spelling)."""
    import typer.main

    from genvae.cli import add_plugin_commands, app

    add_plugin_commands(["a-plugin-command"])  # plugins' commands are documented too
    out: dict[str, tuple[bool, set[str]]] = {}

    def walk(command, path: str) -> None:
        options = {o for p in command.params for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}
        out[path] = (hasattr(command, "commands"), {o for o in options if o.startswith("-")} | {"--help"})
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return out


def command_line_problems(rest: str, commands: dict[str, tuple[bool, set[str]]]) -> list[str]:
    """What is wrong with `genvae REST`: an unknown command, or an option its command lacks.
    `a|b` names several commands (a table's `bench table2|ood`); `COMMAND` is a placeholder."""
    words = rest.split()
    path, i = "", 0
    while i < len(words) and commands[path][0] and re.fullmatch(r"[a-z][\w-]*(\|[a-z][\w-]*)*", words[i]):
        names = words[i].split("|")
        missing = [name for name in names if f"{path} {name}".strip() not in commands]
        if missing:
            return [f"no command 'genvae {path} {missing[0]}'".replace("genvae  ", "genvae ")]
        path, i = f"{path} {names[0]}".strip(), i + 1
    options = OPTION.findall(" ".join(words[i:]))
    return [f"'genvae {path}' has no option {o}".replace("genvae  ", "genvae ") for o in options if o not in commands[path][1]]


SETTING = re.compile(r"--set[ =]'?([a-z_]+)\.([a-z_]+)=")


def setting_problems(rest: str) -> list[str]:
    """The `--set SECTION.KEY=...` of `genvae REST` whose section, or whose key in every plugin of
    that section, does not exist."""
    from dataclasses import fields

    from genvae.core.config import SECTIONS, OptimConfig, TrainConfig
    from genvae.core.plugins import get_plugins
    from genvae.core.progressive import GrowConfig
    from genvae.core.run import _owners

    fixed = {"train": TrainConfig, "optim": OptimConfig, "grow": GrowConfig}
    plugins = get_plugins()
    registries = {"objective": plugins.objectives, "arch": plugins.architectures}
    elsewhere = {s for s, name in re.findall(r"--(objective|arch)[ =]([\w-]+)", rest) if name not in registries[s]}  # a tutorial's plugin
    problems = []
    for section, key in SETTING.findall(rest):
        if section in elsewhere:
            continue
        if section not in SECTIONS:
            problems.append(f"no settings section {section!r}")
        elif section in fixed and key not in {f.name for f in fields(fixed[section])}:
            problems.append(f"no setting {section}.{key}")
        elif section not in fixed and not _owners(plugins, section, key):
            problems.append(f"no {section} plugin has the setting {section}.{key}")
    return problems


def test_command_line_problems_are_found():
    """The check below fails where a doc names a command or an option that does not exist."""
    commands = cli_commands()
    assert command_line_problems("train --objective vae --steps 5 --set optim.lr=[1,2]", commands) == []
    assert command_line_problems("train --stpes 5", commands) == ["'genvae train' has no option --stpes"]
    assert command_line_problems("eval ood runs/x --out mnist -q 3", commands) == ["'genvae eval ood' has no option -q"]
    assert command_line_problems("eval oodd runs/x", commands) == ["no command 'genvae eval oodd'"]
    assert command_line_problems("trian --steps 5", commands) == ["no command 'genvae trian'"]
    assert command_line_problems("bench table2|stability [--seeds 5] [--jobs N]", commands) == []
    assert setting_problems("train --set optim.lr=1 --set 'train.eval_options={}' --set arch.hidden=8 --set data.path=x") == []
    assert setting_problems("train --objective not-installed --set objective.warmup=3 --set arch.hiden=8") == ["no arch plugin has the setting arch.hiden"]
    assert setting_problems("train --set optim.rl=1 --set objective.beta_nge=2 --set trian.steps=3") == [
        "no setting optim.rl",
        "no objective plugin has the setting objective.beta_nge",
        "no settings section 'trian'",
    ]
    assert doc_command_lines("```bash\ngenvae train \\\n    --steps 5   # a comment --nope\n```\nsee `genvae info RUN [--json]`") == [
        "train --steps 5",
        "info RUN [--json]",
    ]


@pytest.mark.parametrize("doc", COMMAND_DOCS, ids=lambda p: p.name)
def test_every_documented_command_line_parses(doc):
    commands = cli_commands()
    lines = doc_command_lines(doc.read_text())
    problems = [f"{problem}: genvae {line}" for line in lines for problem in command_line_problems(line, commands) + setting_problems(line)]
    assert not problems, f"{doc.name}:\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------
# Every Python block of the docs runs on its own: it imports or defines each name it uses
# --------------------------------------------------------------------------------------------


def undefined_names(code: str) -> set[str]:
    """Names a block reads that it neither imports, assigns, defines nor gets from builtins
    (scopes flattened: enough for documentation examples)."""
    import ast
    import builtins

    tree = ast.parse(code)
    bound: set[str] = set(dir(builtins))
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            if not isinstance(node, ast.ClassDef):
                bound.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
        elif isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else read).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return read - bound


def test_undefined_names_are_found():
    assert undefined_names("import torch\nx = torch.zeros(2)\ny = genvae.train(x)\n") == {"genvae"}
    assert undefined_names("def f(a, *b, c=1):\n    return a, b, c\nfor i in range(3):\n    f(i)\n") == set()


@pytest.mark.parametrize("doc", COMMAND_DOCS, ids=lambda p: p.name)
def test_every_python_block_imports_what_it_uses(doc):
    """A reader copies one block into a script or notebook cell: a name taken from an earlier block
    is a NameError there. Blocks that use a pytest fixture are test functions (their arguments)."""
    blocks = re.findall(r"^```python\n(.*?)^```", doc.read_text(), flags=re.M | re.S)
    problems = [f"block {i + 1}: {sorted(names)}" for i, block in enumerate(blocks) if (names := undefined_names(block))]
    assert not problems, f"{doc.name}: names used but not imported or defined:\n" + "\n".join(problems)
