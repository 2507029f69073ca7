"""What the ``outputs``, ``review`` and ``release`` commands show (and the demo): requests, checks, votes.

Reasons and figures only: a flagged cell is named by its row and column; its
value is in the output file the reviewer opens, never printed here.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from research_kit.review.requests import Output, Request

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
        done = sum(1 for o in r.reviewable if len(set(o.approvals)) >= r.approvals_required)
        table.add_row(
            str(r.id), escape(r.study), escape(r.author), r.state, str(len(r.outputs)), str(counts["pass"]),
            str(counts["review"]), str(counts["fail"]), str(counts["gated"]), f"{done}/{len(r.reviewable)}",
        )  # fmt: skip
    console.print(table)


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


def _print_output(console: Console, request: Request, output: Output, prov: dict[str, object] | None) -> None:
    style = STATUS_STYLE[output.status]
    votes = len(set(output.approvals))
    console.print(
        f"\n[bold]{escape(output.key)}[/bold]  [{style}]{output.status}[/{style}]  {output.path}"
        + (f"  approvals {votes}/{request.approvals_required}" if output.status != "gated" else "")
        + (f" ({', '.join(sorted(set(output.approvals)))})" if output.approvals else "")
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
    if prov:
        console.print(
            f"  from {prov.get('notebook')} (run {prov.get('run')}, extract {output.extract}, commit "
            f"{prov.get('git_commit')})"
        )
        diff = prov.get("diff")
        if isinstance(diff, dict):
            console.print(f"  diff against {escape(str(diff.get('against', 'the last version')))}")
