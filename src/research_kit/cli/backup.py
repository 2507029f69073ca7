"""``backup`` and ``restore``: checksummed snapshots of the workspace (a steward's)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from research_kit.actions import backup as backups
from research_kit.actions import setup
from research_kit.cli.common import actor, console, workspace
from research_kit.cli.signin import read_secret
from research_kit.core import backup as snapshots
from research_kit.core.errors import BadInput
from research_kit.core.workspace import check_name, default_root

app = typer.Typer(add_completion=False)


def say(text: str) -> None:
    """One line of the result, never folded (paths and checksums are copied from it)."""
    console.print(text, soft_wrap=True)


@contextmanager
def _progress() -> Iterator[snapshots.Progress]:
    """A bar over the bytes of extract data copied or checksummed (none when there is nothing to copy)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        yield update


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{n} bytes"  # pragma: no cover


def _extracts(kept: dict[str, str]) -> str:
    if not kept:
        return "none"
    return ", ".join(f"{name} ({'copied' if how == 'copy' else 'by reference'})" for name, how in kept.items())


@app.command()
def backup(
    out: Annotated[Path, typer.Argument(help="The snapshot's folder: a new one, outside the workspace.")],
    copy_data: Annotated[
        bool,
        typer.Option(
            "--copy-data",
            help="Copy the extracts' data into the snapshot (without it: by reference, their folders and checksums).",
        ),
    ] = False,
) -> None:
    """Write a checksummed snapshot: catalog, audit log, policy, extracts' manifests (a steward; never the key)."""
    ws = workspace()
    with _progress() as progress:
        snap = backups.backup(ws, actor=actor(ws), out=out, copy_data=copy_data, progress=progress)
    seq, _ = snap.audit_head
    say(f"snapshot written: {escape(str(snap.path))} ({snap.files} files, {_size(snap.bytes)})")
    say(f"  audit log up to entry {seq}; catalog schema version {snap.manifest['schema_version']}")
    say(f"  extracts: {escape(_extracts(snap.extracts))}")
    say(f"  manifest SHA-256 {snap.checksum} (recorded in the audit log as workspace.backup)")
    fingerprints = ", ".join(snap.manifest["key_fingerprints"]) or "none yet"
    say(
        f"The pseudonymisation key is not in it: back the key file up apart (fingerprint {fingerprints}); "
        "new exports are pseudonymised consistently only with it."
    )
    if not copy_data and snap.extracts:
        say("Extract data are by reference: restoring needs them where they are now, unchanged.")


@app.command()
def restore(
    snapshot: Annotated[Path, typer.Argument(help="The snapshot's folder (written by research-kit backup).")],
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Restore into this new or empty folder (default: $RESEARCH_KIT_HOME or .workspace)."),
    ] = None,
    steward: Annotated[
        str | None,
        typer.Option(
            help="Restore as this steward of the snapshot, by their password, where no workspace is left to sign "
            "in to (without it: as your sign-in on the current workspace, who must be a steward there)."
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the --steward's password from stdin.")
    ] = False,
) -> None:
    """Check a snapshot and restore it into a new folder; refused if any checksum or the audit chain fails."""
    if steward is None:
        if setup.existing_workspace() is None:
            raise BadInput(
                f"{default_root()}: no workspace to sign in to here; restore as a steward of the snapshot: "
                "--steward NAME (asks their password)"
            )
        ws = workspace()
        with _progress() as progress:
            done = backups.restore(snapshot, actor=actor(ws), to=to, live=ws, progress=progress)
    else:
        check_name(steward, "--steward")
        password = read_secret(f"password for {steward}", from_stdin=password_stdin)
        with _progress() as progress:
            done = backups.restore(snapshot, actor=steward, to=to, password=password, progress=progress)
    seq, _ = done.snapshot.audit_head
    say(f"restored into {escape(str(done.root))}")
    say(
        f"  snapshot of {done.snapshot.manifest['created_at']}: every file's SHA-256, the audit chain (entries 1 to "
        f"{seq}) and the extracts' data verified; workspace.restored recorded"
    )
    say(f"  extracts: {escape(_extracts(done.snapshot.extracts))}")
    say(
        f"  manifest SHA-256 {done.snapshot.checksum}: compare it with the workspace.backup entry of the source's "
        "audit log"
    )
    say(f"Every sign-in ended: sign in there (RESEARCH_KIT_HOME={escape(str(done.root))} research-kit login NAME).")
