"""``genvae plugins new NAME --kind KIND``: start a plugin package (see :mod:`genvae.scaffold`)."""

from __future__ import annotations

from pathlib import Path

import typer

from genvae.commands.common import console, user_errors


@user_errors
def new_plugin(
    name: str = typer.Argument(..., metavar="NAME", help="The plugin's name, e.g. my-vae: it registers the component NAME."),
    kind: str = typer.Option("objective", "--kind", "-k", help="objective | architecture | dataset | metric"),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create genvae-NAME/."),
) -> None:
    """Create genvae-NAME/: a working plugin of that kind, its entry point and its contract tests."""
    from genvae.scaffold import USE, write_plugin

    root = write_plugin(name, kind, directory)
    console.print(f"wrote {root}/ (pyproject.toml, the {kind} in {root.name.replace('-', '_')}/__init__.py, tests, README.md)", soft_wrap=True)
    console.print(f"next: pip install -e {root} && pytest {root}/tests && {USE[kind].format(name=name)}", soft_wrap=True, highlight=False)
