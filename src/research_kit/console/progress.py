"""Progress on the terminal: bars over patients and actions, a spinner over steps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def patient_progress(console: Console, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over patients; yields a callback taking the number done so far."""
    with Progress(
        TextColumn("[bold]simulating patients"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("simulate", total=total)
        yield lambda done: progress.update(task, completed=done)


@contextmanager
def steps(console: Console, title: str) -> Iterator[Callable[[str], None]]:
    """A spinner naming the step under way; yields a callback taking the step's name."""
    with console.status(f"{title}: starting") as status:
        yield lambda message: status.update(f"{title}: {message}")


class RunProgress:
    """A bar over a run's actions, one line per finished action (a runner listener)."""

    def __init__(self, console: Console, total: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        )
        self.task = self.progress.add_task("actions", total=total)
        self.running: set[str] = set()

    def __call__(self, action: str, event: str, detail: str) -> None:
        if event == "started":
            self.running.add(action)
        else:
            self.running.discard(action)
            style = {"ran": "green", "cached": "cyan", "failed": "red", "skipped": "yellow"}[event]
            line = f"  [{style}]{event:>7}[/] {action}" + (f"  {escape(detail)}" if detail else "")
            self.progress.console.print(line, soft_wrap=True)
            self.progress.advance(self.task)
        running = ", ".join(sorted(self.running))
        self.progress.update(self.task, description=f"running {running}" if running else "actions")
