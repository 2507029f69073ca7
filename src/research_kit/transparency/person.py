"""A person's "where was my data used?": one letter, for one person, in their language.

A steward answers a person who asked (their identity checked outside the
platform) with the person's national ID, read on standard input. From it
come two keyed values, as ingest and the opt-out register make them: the
person's extract pseudonym (:func:`~research_kit.pseudonymise.pseudonyms.pseudonym`)
and their opt-out register entry (:func:`~research_kit.pseudonymise.optouts.person_hash`).
The ID itself is used for nothing else: it is never shown, logged, audited or
written, and the letter does not hold it (nor the pseudonym).

The letter says:

- which extract versions hold the person (each registered extract's
  ``patients.parquet`` asked whether the pseudonym is in it: a yes or no,
  never another row);
- under which permits those extract versions were *used*: a permit whose
  study ran a pipeline on one of them, or asked a DP query of it (the
  ledger's spend names its source), while the permit was in force; for the
  registry's DP twin, a DP twin built from one of them. A permit that could
  have used them but did not is not named as having used them;
- which permits in force may still use the person's data: none once their
  own opt-out is recorded; otherwise those covering the newest registered
  extract version that holds them (never whether a version was built against
  today's whole opt-out register, which anyone else's opt-out changes);
- which released results drew on those extract versions (a released
  request's output made from one of them), with the release's checksum as
  the public register shows it;
- whether an opt-out of theirs is recorded, and since when it took effect.

Nothing in it depends on anyone else's data: the same person gets the same
letter whoever else the registry holds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import jinja2
import polars as pl

from research_kit import __version__
from research_kit.core import audit, permits
from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput, MissingData
from research_kit.core.extracts import Extract, list_extracts
from research_kit.core.i18n import BUILT_IN, Languages
from research_kit.core.permits import REGISTRY_TWIN, Permit
from research_kit.core.workspace import Workspace
from research_kit.model.tables import EXTRACT_KEY
from research_kit.pseudonymise.keys import Key
from research_kit.pseudonymise.optouts import Entry, person_hash
from research_kit.pseudonymise.pseudonyms import pseudonym
from research_kit.transparency import labels
from research_kit.transparency.register import TEMPLATES, granted_permits, permit_at

READS_REAL_DATA = ("dp", "real")  # a permit of the twin tier never touches an extract


@dataclass(frozen=True)
class Held:
    """An extract version that holds the person."""

    id: str
    created_on: str


@dataclass(frozen=True)
class PermitUsed:
    """A permit, as the letter names it, and the extract versions (of those holding the person) it used."""

    id: int
    registry_twin: bool
    study: str
    purpose: str
    category: str
    holder: str
    granted_on: str
    until: str
    ended_on: str | None
    status: str
    extracts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Released:
    """A release whose outputs drew on an extract version holding the person."""

    request: int
    study: str
    permit: int | None
    released_on: str
    bundle_sha256: str
    extracts: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """What the letter says: about one person, and nobody else."""

    asked_on: date
    extracts: tuple[Held, ...]
    unchecked: tuple[str, ...]  # extract versions made with another key: the person cannot be looked for there
    used: tuple[PermitUsed, ...]
    may_use: tuple[PermitUsed, ...]
    releases: tuple[Released, ...]
    optout_since: str | None  # the day their opt-out took effect, if one is recorded
    generator: str = field(default=f"research-kit {__version__}")


# -- finding the person ---------------------------------------------------------------------------------------------


def _holds(extract: Extract, mine: str) -> bool:
    """Whether ``extract``'s patients table holds the pseudonym ``mine``: one yes or no, no row read out."""
    found = pl.scan_parquet(extract.table_path("patients")).filter(pl.col(EXTRACT_KEY) == mine).select(pl.len())
    return int(found.collect().item()) > 0


def _permit_used(permit: Permit, today: date, extracts: Sequence[str] = ()) -> PermitUsed:
    status = permit.status(today)
    ended = (permit.revoked_at or "")[:10] if permit.state == "revoked" else (
        permit.until.isoformat() if status == permits.EXPIRED else None)  # fmt: skip
    return PermitUsed(
        id=permit.id, registry_twin=permit.study == REGISTRY_TWIN, study=permit.study, purpose=permit.purpose,
        category=permit.category, holder=permit.holder, granted_on=(permit.decided_at or "")[:10],
        until=permit.until.isoformat(), ended_on=ended, status=status, extracts=tuple(sorted(extracts)),
    )  # fmt: skip


def _uses(conn: sqlite3.Connection, held: set[str]) -> list[tuple[str, str, str]]:
    """(study, extract, when) of every run on, DP query of, and DP twin built from an extract version in
    ``held``: the registry twin's permit under :data:`~research_kit.core.permits.REGISTRY_TWIN`."""
    found: list[tuple[str, str, str]] = []
    for row in conn.execute("SELECT study, extract, started_at FROM runs"):
        if row["extract"] in held:
            found.append((row["study"], row["extract"], row["started_at"]))
    for row in conn.execute("SELECT study, source, query, reserved_at FROM dp_spends WHERE tier = 'real'"):
        # A DP twin's spend names the twin as its source, and the extract it read in its query.
        source = json.loads(row["query"]).get("extract") if row["study"] == REGISTRY_TWIN else row["source"]
        if source in held:
            found.append((row["study"], str(source), row["reserved_at"]))
    return found


def find(ws: Workspace, key: Key, person: Entry, *, today: date | None = None) -> Report:
    """The report of the person whose national ID ``person`` holds (read with the opt-out register's reader)."""
    day = today or datetime.now(UTC).date()
    mine = pseudonym(key, person.national_id)
    entry = person_hash(key, person.national_id)
    extracts = list_extracts(ws)
    checked = [e for e in extracts if e.key_fingerprint == key.fingerprint and e.table_path("patients").is_file()]
    holding = [e for e in checked if _holds(e, mine)]
    held = {e.id for e in holding}
    with ws.catalog() as conn:
        conn.execute("BEGIN")
        try:
            row = conn.execute("SELECT effective FROM optouts WHERE person = ?", (entry,)).fetchone()
            every = permits.listed(conn)
            by_study: dict[str, list[Permit]] = {}
            for p in every:
                by_study.setdefault(p.study, []).append(p)
            granted = {study: granted_permits(found) for study, found in by_study.items()}
            used: dict[int, set[str]] = {}
            for study, extract, when in _uses(conn, held):
                permit = permit_at(granted.get(study, []), when)
                if permit is not None:
                    used.setdefault(permit.id, set()).add(extract)
            releases = _releases(conn, held, granted)
        finally:
            conn.execute("COMMIT")
    by_id = {p.id: p for p in every}
    # This person's alone: none once their own opt-out is recorded, else the newest registered version holding them.
    research = set() if row is not None or not holding else {holding[-1].id}  # registered order
    may_use = [
        _permit_used(p, day, [e for e in research if p.covers_version(e)])
        for p in sorted(every, key=lambda p: p.id)
        if p.in_force(day) and p.tier in READS_REAL_DATA and any(p.covers_version(e) for e in research)
    ]
    return Report(
        asked_on=day,
        extracts=tuple(Held(e.id, e.created_at[:10]) for e in holding),
        unchecked=tuple(e.id for e in extracts if e not in checked),
        used=tuple(_permit_used(by_id[i], day, sorted(found)) for i, found in sorted(used.items())),
        may_use=tuple(may_use),
        releases=tuple(releases),
        optout_since=str(row["effective"]) if row is not None else None,
    )


def _releases(conn: sqlite3.Connection, held: set[str], granted: dict[str, list[Permit]]) -> list[Released]:
    rows = conn.execute(
        "SELECT r.id, r.study, r.released_at, r.bundle_sha256, o.extract FROM requests r"
        " JOIN request_outputs o ON o.request = r.id"
        " WHERE r.state = 'released' AND o.active = 1 AND o.status != 'gated' ORDER BY r.released_at, r.id"
    ).fetchall()
    found: dict[int, Released] = {}
    for row in rows:
        if row["extract"] not in held:
            continue
        before = found.get(row["id"])
        extracts = tuple(sorted({*(before.extracts if before else ()), row["extract"]}))
        permit = permit_at(granted.get(row["study"], []), row["released_at"])
        found[row["id"]] = Released(
            request=row["id"], study=row["study"], permit=permit.id if permit is not None else None,
            released_on=row["released_at"][:10], bundle_sha256=row["bundle_sha256"], extracts=extracts,
        )  # fmt: skip
    return list(found.values())


# -- the letter -----------------------------------------------------------------------------------------------------


def render(report: Report, lang: str, languages: Languages = BUILT_IN) -> str:
    """The letter, as a self-contained HTML page in ``lang``, one of ``languages`` (no script, nothing loaded from
    elsewhere)."""
    env = languages.environment(jinja2.FileSystemLoader(TEMPLATES), lang, generator=report.generator)
    return env.get_template("letter.html").render(report=report, labels=labels, switch=[])


def check_target(out: Path) -> None:
    """Refuse, in one line, a letter's path that cannot take one (before the ID is read)."""
    if not out.parent.is_dir():
        raise MissingData(f"{out.parent}: no such folder")
    if out.is_dir():
        raise BadInput(f"--out {out}: a folder; name the letter's file")


def write(ws: Workspace, out: Path, page: str, *, lang: str, found: int) -> Path:
    """Write the letter to ``out`` (mode 0600: it is about one person), whole or not at all, audited as
    ``transparency.person`` with its language and the number of extract versions found, never whom it is about."""
    out = Path(os.path.abspath(out))
    check_target(out)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)  # mode 0600
    staged = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        with ws.catalog() as conn, transaction(conn):
            audit.append(conn, ws.audit_path, "transparency.person", {"lang": lang, "extracts_found": found})
            os.replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)
    return out
