"""``research-kit release REQUEST``: an approved request's bundle, the only way outputs leave.

The bundle is a zip in ``releases/`` holding:

- ``outputs/ACTION/FILE``: every approved output (gated ones never);
- ``checksums.sha256``: one ``sha256  path`` line per file (``sha256sum -c``);
- ``SUMMARY.md``: for people: the request, each output's checks, votes,
  mitigations, DP guarantee and provenance;
- ``results.json``: the same in ACRO's format, so ACRO and SACRO-Viewer
  users can read it.

Sidecars never enter a bundle (they may hold the largest contributions
behind a cell). The zip is written to a temporary file and renamed; its hash,
the request's new state and the audit entry commit together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from research_kit import __version__
from research_kit.core import audit, permissions, permits
from research_kit.core.catalog import row_id, transaction
from research_kit.core.checksums import file_sha256
from research_kit.core.errors import IntegrityError, PolicyRefusal
from research_kit.core.faults import fault
from research_kit.core.locks import alive
from research_kit.core.permissions import Act, State
from research_kit.core.workspace import Workspace
from research_kit.disclosure.results import FAIL, CheckResult, Flag, OutputChecks, result
from research_kit.outputs import sidecar as sc
from research_kit.review import acro_format
from research_kit.review import requests as review

log = logging.getLogger("research_kit")
EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: the same request gives the same bytes


def releases_dir(ws: Workspace) -> Path:
    return ws.root / "releases"


def _staging(ws: Workspace) -> Path:
    """Where a bundle is written before its release commits: never in ``releases/``, which holds released ones."""
    return ws.scratch_dir / "releases"


def finish_release(ws: Workspace, request_id: int) -> bool:
    """Move a released request's bundle into ``releases/`` if its release was killed after committing.

    The staged bundle is found by the checksum the catalog recorded; True when one was moved.
    """
    if not row_id(request_id):
        return False
    with ws.catalog() as conn:
        row = conn.execute("SELECT state, bundle, bundle_sha256 FROM requests WHERE id = ?", (request_id,)).fetchone()
    if row is None or row["state"] != "released" or not row["bundle"] or Path(row["bundle"]).exists():
        return False
    for staged in sorted(_staging(ws).glob(f"request-{request_id}-*.zip.*")):
        if file_sha256(staged) == row["bundle_sha256"]:
            os.replace(staged, row["bundle"])
            log.warning("research-kit: finished releasing request %s (its release stopped after committing)",
                        request_id)  # fmt: skip
            return True
    return False


def _clear_staged(ws: Workspace, request_id: int) -> None:
    """Remove bundles of this request staged by releases that died before committing (their process is gone)."""
    for staged in _staging(ws).glob(f"request-{request_id}-*.zip.*"):
        pid = staged.suffix.lstrip(".")
        if pid.isdigit() and not alive(int(pid)):
            staged.unlink(missing_ok=True)


def release(ws: Workspace, request_id: int) -> Path:
    """Bundle an approved request's outputs and mark it released: the bundle appears in ``releases/`` only
    once the release has committed (a kill before leaves nothing there; after, the next look finishes it)."""
    actor = audit.current_actor()
    finish_release(ws, request_id)
    request = review.get(ws, request_id, viewer=actor)
    with ws.catalog() as conn:
        permissions.check(Act.RELEASE, State(request.state), review.person(conn, actor, request), request=request_id)
        # The study's permit, in force or ended (results are due after it), never revoked.
        permits.check(conn, request.study, None, tier="twin", doing="releasing its outputs", after_end=True)
    chosen = request.reviewable
    for output in chosen:
        if not output.path.is_file() or file_sha256(output.path) != output.sha256:
            raise IntegrityError(f"{output.key}: its file changed or vanished since it was reviewed ({output.path})")
    released_at = datetime.now(UTC).isoformat(timespec="seconds")
    files = {f"outputs/{o.action}/{o.path.name}": o.path.read_bytes() for o in chosen}
    files["SUMMARY.md"] = _summary(ws, request, actor, released_at).encode("utf-8")
    files["results.json"] = json.dumps(_acro(ws, request, released_at), indent=2, sort_keys=True).encode("utf-8")
    files["checksums.sha256"] = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())
    ).encode("utf-8")
    folder = releases_dir(ws)
    folder.mkdir(mode=0o700, exist_ok=True)
    _staging(ws).mkdir(mode=0o700, parents=True, exist_ok=True)
    _clear_staged(ws, request_id)
    path = folder / f"request-{request_id}-{request.study}.zip"
    tmp = _staging(ws) / f"{path.name}.{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, files[name])
    digest = file_sha256(tmp)
    fault("release.after_bundle")
    with ws.catalog() as conn, transaction(conn):
        state = conn.execute("SELECT state FROM requests WHERE id = ?", (request_id,)).fetchone()["state"]
        if state != "approved":  # changed meanwhile
            tmp.unlink()
            raise PolicyRefusal(f"request {request_id} is {state}: only an approved request is released")
        conn.execute(
            "UPDATE requests SET state = ?, released_at = ?, updated_at = ?, bundle = ?, bundle_sha256 = ?"
            " WHERE id = ?",
            (
                permissions.next_state(Act.RELEASE, State(state)),
                released_at,
                released_at,
                str(path),
                digest,
                request_id,
            ),
        )
        for output in chosen:
            if output.queue is not None:
                conn.execute("UPDATE review_queue SET state = 'released' WHERE id = ?", (output.queue,))
        audit.append(conn, ws.audit_path, "release.create",
                     {"request": request_id, "study": request.study, "bundle": path.name, "sha256": digest,
                      "outputs": [o.key for o in chosen]})  # fmt: skip
    fault("release.after_commit")
    os.replace(tmp, path)
    return path


def _summary(ws: Workspace, request: review.Request, actor: str, at: str) -> str:
    lines = [
        f"# Release of request {request.id}: study {request.study}",
        "",
        f"- author: {request.author}",
        f"- submitted: {request.submitted_at}",
        f"- released: {at}, by {actor}",
        f"- approvals required per output: {request.approvals_required}",
        f"- research-kit {__version__}",
        "",
    ]
    for output in request.reviewable:
        checks = output.checks
        prov = review.provenance(ws, output)
        lines += [
            f"## {output.key} (`outputs/{output.action}/{output.path.name}`)",
            "",
            f"- checks: {output.status}",
            f"- approved by: {', '.join(sorted(set(output.approvals)))}",
            f"- sha256: {output.sha256}",
            f"- extract: {output.extract}",
        ]
        if prov:
            lines += [
                f"- pipeline: {prov['pipeline']}, run {prov['run']} ({prov['trigger']})",
                f"- notebook: {prov['notebook']}, parameters {json.dumps(prov['parameters'], sort_keys=True)}",
                f"- commit: {prov['git_commit']}",
            ]
        car = sc.read(output.path)
        if car is not None and car.dp is not None:
            lines.append(
                f"- differential privacy: {car.dp.mechanism}, rho {car.dp.rho:g} "
                f"(epsilon {car.dp.epsilon:g} at delta {car.dp.delta:g})"
            )
        if car is not None:
            for record in car.mitigations:
                lines.append(f"- mitigation: {record.get('method')} ({record.get('cells_changed', '?')} cells changed)")
        found = checks.sdc or CheckResult("pass", (), ())
        for note in found.notes:
            lines.append(f"- note: {note}")
        for flag in found.flags:
            where = f"row {flag.row}, {flag.column}: " if flag.row is not None else ""
            lines.append(f"- flag ({flag.rule}, {flag.severity}): {where}{flag.reason}")
        for pair in checks.differencing:
            lines.append(f"- differencing: {pair.reason}")
        lines.append("")
    public = [c for c in request.comments if c.visibility == "researcher"]
    if public:
        lines += ["## Comments", ""] + [f"- {c.author} ({c.at}): {c.body}" for c in public] + [""]
    return "\n".join(lines)


def _acro(ws: Workspace, request: review.Request, at: str) -> dict[str, Any]:
    """ACRO's ``results.json``: each output with the checks as they stood when the committee approved it."""
    records: dict[str, dict[str, Any]] = {}
    for number, output in enumerate(request.reviewable):
        car = sc.read(output.path) or sc.Sidecar(
            name=output.name,
            file=output.path.name,
            type="table" if output.path.suffix.lower() == ".csv" else "figure",
            kind="descriptive",
        )
        frame = pd.read_csv(output.path) if output.path.suffix.lower() == ".csv" else None
        public = [c.body for c in request.comments if c.visibility == "researcher" and c.output in (None, output.key)]
        records[f"output_{number}"] = acro_format.acro_record(
            f"output_{number}",
            [f"outputs/{output.action}/{output.path.name}"],
            car,
            _stored(output.checks),
            frame,
            status=_acro_status(output.status),
            comments=public,
            exception="; ".join(public) if output.status == "fail" else "",
            timestamp=at,
            command=f"research-kit: {output.key}",
        )
    return acro_format.acro_results(records, version=acro_format.ACRO_VERSION)


def _stored(checks: OutputChecks) -> CheckResult:
    """The checks as ACRO's record holds them: the SDC flags, and each differencing pair as a fail flag."""
    found = checks.sdc or CheckResult("pass", (), ())
    flags = [*found.flags, *(Flag("differencing", None, None, d.reason, FAIL) for d in checks.differencing)]
    return result(flags, found.notes, [f.rule for f in flags])


def _acro_status(status: str) -> str:
    return {"pass": "pass", "review": "review", "fail": "fail"}.get(status, "review")
