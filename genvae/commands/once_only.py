"""Options that take one value may be given once: click keeps the last of ``--data a --data b``
silently, so a user who typed both trains on ``b`` without knowing. ``OnceOnlyGroup`` (the
``cls`` of every genvae command group) refuses that with a usage error naming the option. It also
joins the lines of each paragraph of its commands' help (Typer's rich help keeps a docstring's
line breaks, which broke sentences where the source wrapped them).

Typer ships its own copy of click, so parameters and contexts are recognised by what they are
(``param_type_name``, ``type(ctx)``), not by the classes of the ``click`` package."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

from typer.core import TyperGroup


def repeated_options(command: Any, parent: Any, args: list[str]) -> list[str]:
    """Names of ``command``'s single-valued options that ``args`` gives more than once (flags and
    ``multiple`` options may repeat). Empty when ``args`` does not parse: click reports that itself."""
    ctx = type(parent)(command, parent=parent, info_name=command.name, resilient_parsing=True)
    try:
        _, _, order = command.make_parser(ctx).parse_args(args=list(args))
    except Exception:  # noqa: BLE001 - a usage error of its own, which the real parse reports
        return []
    counts = Counter(p for p in order if p.param_type_name == "option" and not (p.multiple or p.count or p.is_flag))
    return [max(p.opts, key=len) for p, n in counts.items() if n > 1]


class OnceOnlyGroup(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if command.help:  # each paragraph's lines joined; the first paragraph is the summary in lists
                paragraphs = [p if p.startswith("\b") else " ".join(p.split()) for p in inspect.cleandoc(command.help).split("\n\n")]
                command.help = "\n\n".join(paragraphs)
                command.short_help = command.short_help or paragraphs[0]

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not isinstance(command, TyperGroup):
            if repeated := repeated_options(command, ctx, rest):
                which = "it" if len(repeated) == 1 else "each"
                type(ctx)(command, parent=ctx, info_name=name).fail(
                    f"{' and '.join(repeated)} given more than once; give {which} once (only the last would count)"
                )
        return name, command, rest
