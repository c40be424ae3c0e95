"""How `usagegraph … --help` reads: an example and the environment variables of every
command, and value names instead of typer's type column.

Typer (0.29) prints a Python type beside every parameter (`--host <str>`, `--help <bool>`,
`file <file>`): noise to someone who wants to know what to type. The command classes here
name every value instead (`--port PORT`, `FILE`) and show nothing for flags; typer shows an
argument's type even when it has a metavar, so arguments get a class that shows the name.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Iterable
from typing import Any

from typer import _click  # typer's own copy of click: its types, not click's
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

HELP_WIDTH = 76


class _NamedArgument(TyperArgument):
    """An argument whose help shows its name (metavar), never its Python type."""

    def display_type_rich(self, ctx: _click.Context) -> str | None:
        return None


def _name_values(params: list[_click.Parameter]) -> list[_click.Parameter]:
    """Give every parameter a name to show where typer would print its type.

    Typer builds its parameter objects itself and offers no hook for their class, so an
    argument's class is switched to `_NamedArgument` here (a subclass adding only that
    method). Done on each help request; setting the same values again changes nothing.
    """
    for param in params:
        if isinstance(param, TyperArgument):
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
            param.__class__ = _NamedArgument
        elif isinstance(param, TyperOption) and param.metavar is None:
            # A flag takes no value, so it shows none; any other option its name.
            param.metavar = "" if param.is_flag else (param.name or "value").upper()
    return params


def _reflow(text: str) -> str:
    """A docstring's paragraphs as single lines, for the terminal to wrap: typer's rich
    help keeps the source's line breaks after the first paragraph, which then show as
    ragged lines."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


class PlainHelpCommand(TyperCommand):
    """A command whose help names values instead of printing their types."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = _reflow(self.help)

    def get_params(self, ctx: _click.Context) -> list[_click.Parameter]:
        return _name_values(super().get_params(ctx))


class PlainHelpGroup(TyperGroup):
    """A group of commands whose help names values instead of printing their types."""

    def get_params(self, ctx: _click.Context) -> list[_click.Parameter]:
        return _name_values(super().get_params(ctx))


def epilog(examples: Iterable[str], environment: Iterable[str], note: str = "") -> str:
    """The end of a command's help: how to call it, and what it reads from the environment.

    The variables are the ones that change what the command does; `note` says anything
    else worth knowing about them. An empty `environment` says so.
    """
    lines = ["Example:"]
    lines += [f"  {example}" for example in examples]
    names = list(environment)
    lines += ["", "Environment:"]
    listed = ", ".join(names) if names else "none (it needs no configuration)"
    lines += textwrap.wrap(
        listed, HELP_WIDTH, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False
    )
    if note:
        lines += textwrap.wrap(
            note, HELP_WIDTH, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False
        )
    return "\n".join(lines)
