"""What the ``outputs``, ``review`` and ``release`` commands show (and the demo): requests, checks, votes; on the
terminal, and as JSON (``--json``).

Reasons and figures only: a flagged cell is named by its row and column; its
value is in the output file the reviewer opens, never printed here.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from research_kit.console.output import print_table
from research_kit.disclosure.results import Interval
from research_kit.review.requests import Comment, Output, Request

MAX_FLAGS = 8  # per output on the terminal
STATUS_STYLE = {"gated": "red", "fail": "yellow", "review": "cyan", "pass": "green"}


def print_requests(console: Console, requests: list[Request], title: str = "review requests") -> None:
    if not requests:
        console.print(f"{title}: none")
        return
    table = Table(title=title)
    for column in ("request", "study", "author", "state", "outputs", "pass", "review", "fail", "gated", "approved"):
        table.add_column(column, justify="right" if column not in ("study", "author", "state") else "left")
    for r in requests:
        counts = r.counts()
        table.add_row(
            str(r.id), escape(r.study), escape(r.author), r.state, str(len(r.outputs)), str(counts["pass"]),
            str(counts["review"]), str(counts["fail"]), str(counts["gated"]), f"{_approved(r)}/{len(r.reviewable)}",
        )  # fmt: skip
    print_table(console, table)


def _voters(output: Output) -> list[str]:
    """The committee members who approved this version of the output, each once, by name."""
    return sorted(set(output.approvals))


def _is_approved(request: Request, output: Output) -> bool:
    """An output that is not gated, with the approvals the policy asks for."""
    return output.status != "gated" and len(_voters(output)) >= request.approvals_required


def _approved(request: Request) -> int:
    """How many of the request's outputs are approved."""
    return sum(1 for o in request.outputs if _is_approved(request, o))


def requests_json(requests: list[Request]) -> list[dict[str, Any]]:
    """``outputs list --json`` and ``review list --json``: one :func:`request_summary_json` object per request."""
    return [request_summary_json(r) for r in requests]


def request_summary_json(request: Request) -> dict[str, Any]:
    """A request as its list shows it: ``id``, ``study``, ``author``, ``state``, its times (``created_at``,
    ``updated_at``, ``submitted_at``, ``released_at``; null until then), ``approvals_required`` (per output),
    ``counts`` (outputs by check status: ``pass``, ``review``, ``fail``, ``gated``), ``reviewable`` (outputs not
    gated), ``approved`` (outputs approved), and ``outputs`` (:func:`output_json`)."""
    return {
        "id": request.id,
        "study": request.study,
        "author": request.author,
        "state": request.state,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
        "submitted_at": request.submitted_at,
        "released_at": request.released_at,
        "approvals_required": request.approvals_required,
        "counts": request.counts(),
        "reviewable": len(request.reviewable),
        "approved": _approved(request),
        "outputs": [output_json(request, o) for o in request.outputs],
    }


def output_json(request: Request, output: Output) -> dict[str, Any]:
    """An output's current version: ``key`` (``ACTION/NAME``), ``action``, ``name``, ``status`` (of its checks),
    ``path`` (its file in the workspace), ``extract``, ``approvals`` (who approved, by name) and ``approved``."""
    return {
        "key": output.key,
        "action": output.action,
        "name": output.name,
        "status": output.status,
        "path": str(output.path),
        "extract": output.extract,
        "approvals": _voters(output),
        "approved": _is_approved(request, output),
    }


def request_json(request: Request, provenance: dict[str, dict[str, object]] | None = None) -> dict[str, Any]:
    """``review show --json``: :func:`request_summary_json`, each output with its checks (:func:`checks_json`)
    and ``provenance`` (:func:`provenance_json`), and the ``comments`` the reader may read (:func:`comment_json`)."""
    found = provenance or {}
    outputs = [
        {**output_json(request, o), **checks_json(o), "provenance": provenance_json(found.get(o.key))}
        for o in request.outputs
    ]
    return {
        **request_summary_json(request),
        "outputs": outputs,
        "comments": [comment_json(c) for c in request.comments],
    }


def checks_json(output: Output) -> dict[str, Any]:
    """What the automatic checks found: ``gate_reasons`` (why a gate stopped it), ``notes``, ``flags`` (each
    ``rule``, ``severity``, ``row`` and ``column`` (null for the whole output or column), ``reason``), and
    ``differencing`` (each ``other`` output and ``reason``), and ``protection``: each suppressed cell's feasible
    interval (``row``, ``column``, ``lower``, ``upper`` (null: unbounded), ``required`` width, ``linked`` outputs,
    ``protected``), computed from the published figures only. Reasons and positions, never a hidden cell's value."""
    checks = output.checks
    flags = checks.sdc.flags if checks.sdc is not None else ()
    return {
        "gate_reasons": list(checks.gate.reasons),
        "notes": list(checks.sdc.notes) if checks.sdc is not None else [],
        "flags": [
            {"rule": f.rule, "severity": f.severity, "row": f.row, "column": f.column, "reason": f.reason}
            for f in flags
        ],
        "differencing": [{"other": pair.other, "reason": pair.reason} for pair in checks.differencing],
        "protection": [interval.to_json() | {"protected": interval.protected} for interval in checks.protection],
    }


def provenance_json(prov: dict[str, object] | None) -> dict[str, Any] | None:
    """Where an output came from: ``pipeline``, ``run``, ``notebook``, ``git_commit``, ``finished_at`` and
    ``diff_against`` (the version it is compared with, or null); null when the output came from no run."""
    if not prov:
        return None
    diff = prov.get("diff")
    return {
        "pipeline": prov.get("pipeline"),
        "run": prov.get("run"),
        "notebook": prov.get("notebook"),
        "git_commit": prov.get("git_commit"),
        "finished_at": prov.get("finished_at"),
        "diff_against": diff.get("against", "the last version") if isinstance(diff, dict) else None,
    }


def comment_json(comment: Comment) -> dict[str, Any]:
    """A comment: ``author``, ``at``, ``visibility`` (``committee`` or ``researcher``), ``output`` (the output's
    key, or null for the whole request) and ``body``."""
    return {
        "author": comment.author,
        "at": comment.at,
        "visibility": comment.visibility,
        "output": comment.output,
        "body": comment.body,
    }


def print_request_summary(console: Console, request: Request) -> None:
    """One line: the request, its state, and how its outputs fared in the checks."""
    counts = request.counts()
    fared = ", ".join(
        f"[{STATUS_STYLE[s]}]{counts[s]} {s}[/{STATUS_STYLE[s]}]"
        for s in ("pass", "review", "fail", "gated")
        if counts[s]
    )
    console.print(
        f"request {request.id} ({escape(request.study)}): {request.state}, {len(request.outputs)} outputs: {fared}"
    )


def print_request(
    console: Console, request: Request, *, provenance: dict[str, dict[str, object]] | None = None
) -> None:
    needed = f"{request.approvals_required} approvals per output, from committee members other than the author"
    console.print(
        f"request {request.id}: study {escape(request.study)}, by {escape(request.author)}, "
        f"[bold]{request.state}[/bold] ({needed})"
    )
    for output in request.outputs:
        _print_output(console, request, output, (provenance or {}).get(output.key))
    for comment in request.comments:
        where = f" on {comment.output}" if comment.output else ""
        private = " [dim](committee only)[/dim]" if comment.visibility == "committee" else ""
        console.print(f"comment by {escape(comment.author)}{where}{private}: {escape(comment.body)}")


def print_protection(console: Console, intervals: tuple[Interval, ...]) -> None:
    """Each suppressed cell's feasible interval against a solver, the narrow ones first."""
    if not intervals:
        return
    narrow = sum(not i.protected for i in intervals)
    console.print(
        f"  suppressed cells: {len(intervals)}, each in an interval a solver finds from the published figures "
        f"(width asked: {intervals[0].required:g}); {narrow} too narrow"
    )
    ordered = sorted(intervals, key=lambda i: (i.protected, i.width, i.row, i.column))
    for i in ordered[:MAX_FLAGS]:
        linked = f" with {', '.join(i.linked)}" if i.linked else ""
        state = "protected" if i.protected else "[red]too narrow[/red]"
        console.print(f"    row {i.row}, {escape(i.column)}: {i.text()}{escape(linked)}  {state}")
    if len(intervals) > MAX_FLAGS:
        console.print(f"    ... and {len(intervals) - MAX_FLAGS} more (all of them in --json and the web app)")


def _print_output(console: Console, request: Request, output: Output, prov: dict[str, object] | None) -> None:
    style = STATUS_STYLE[output.status]
    voters = _voters(output)
    console.print(
        f"\n[bold]{escape(output.key)}[/bold]  [{style}]{output.status}[/{style}]  {output.path}"
        + (f"  approvals {len(voters)}/{request.approvals_required}" if output.status != "gated" else "")
        + (f" ({', '.join(voters)})" if voters else "")
    )
    checks = output.checks
    for reason in checks.gate.reasons:
        console.print(f"  [red]gate[/red]: {escape(reason)}")
    notes = checks.sdc.notes if checks.sdc is not None else ()
    for note in notes:
        console.print(f"  note: {escape(note)}")
    flags = list(checks.sdc.flags) if checks.sdc is not None else []
    if output.path.suffix.lower() in (".png", ".svg") and flags and all("in its table" in f.reason for f in flags):
        console.print(f"  {len(flags)} flags in its table (listed with it)")
        flags = []  # the same cells as its table's, listed there
    for flag in flags[:MAX_FLAGS]:
        where = f"row {flag.row}, {flag.column}: " if flag.row is not None else ""
        console.print(f"  {flag.severity} ({flag.rule}): {escape(where + flag.reason)}")
    if len(flags) > MAX_FLAGS:
        console.print(f"  ... and {len(flags) - MAX_FLAGS} more flagged cells (all of them in the web app)")
    for pair in checks.differencing:
        console.print(f"  fail (differencing): {escape(pair.reason)}")
    print_protection(console, checks.protection)
    if prov:
        console.print(
            f"  from {prov.get('notebook')} (run {prov.get('run')}, extract {output.extract}, commit "
            f"{prov.get('git_commit')})"
        )
        diff = prov.get("diff")
        if isinstance(diff, dict):
            console.print(f"  diff against {escape(str(diff.get('against', 'the last version')))}")
