"""How a command's result reaches standard output: JSON for scripts (``--json``), tables whole in a pipe.

``--json`` prints one JSON document on stdout and nothing else: an array of
objects for a command that lists, one object for a command that shows. The
keys are snake_case, times ISO 8601, numbers numbers; each command's keys are
in docs/interfaces.md ("Machine-readable output"). Warnings and progress go
to stderr, as without ``--json``.

A table printed to a pipe or a file (not a terminal) is as wide as its
longest cells, so nothing in it is cut short with "…"; a width asked for in
``COLUMNS`` is kept (the server of the service mode sets it to its client's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from rich.console import Console, ConsoleOptions, RenderableType
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table

UNBOUNDED = 1_000_000  # the width a table is measured in when nothing limits it


def print_json(data: object) -> None:
    """``data`` (plain dicts, lists, strings, numbers, booleans, None) as indented JSON on stdout."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


def print_table(console: Console, table: Table) -> None:
    """``table`` on the console: fitted to a terminal (or to ``COLUMNS``), else as wide as its cells."""
    if console.is_terminal or console.is_jupyter or _width_asked():
        console.print(table)
        return
    width = Measurement.get(console, console.options.update(max_width=UNBOUNDED), table).maximum
    console.print(_AtWidth(table, width), crop=False)


def _width_asked() -> bool:
    """Whether ``COLUMNS`` names a width (rich then keeps to it)."""
    return os.environ.get("COLUMNS", "").isdigit()


class _AtWidth:
    """A renderable drawn at a width of its own, whatever the console's."""

    def __init__(self, renderable: RenderableType, width: int) -> None:
        self.renderable = renderable
        self.width = width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        yield from console.render(self.renderable, options.update_width(self.width))
