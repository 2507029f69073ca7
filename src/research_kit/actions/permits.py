"""Data permits as people act on them: researchers apply, the committee decides, everyone reads what they may.

The rules are :mod:`research_kit.core.permits`; here are the entry points the
CLI (and, later, the web app) share: each checks who is acting, validates
what they typed against the data model, and makes its change with its audit
line (and, for a grant with a budget, the ledger's grant) in one transaction.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from research_kit.core import audit, permits, users
from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.extracts import Extract, list_extracts
from research_kit.core.locks import Busy, hold
from research_kit.core.permissions import Duty, Role
from research_kit.core.permits import Permit
from research_kit.core.workspace import Workspace, check_name
from research_kit.dp import ledger
from research_kit.dp.accounting import Typed, rho_from, to_picorho
from research_kit.model.tables import EXTRACT_KEY, TABLE_NAMES
from research_kit.studies.runner import studies_dir

EVERY = "all"  # --tables all: every table of the data model


def parse_tables(text: str) -> dict[str, tuple[str, ...] | None] | None:
    """``--tables patients,diagnoses`` as the permit stores it (None: ``all``, every table)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == [EVERY]:
        return None
    if not names:
        raise BadInput(f"--tables: name tables ({', '.join(TABLE_NAMES)}) or '{EVERY}'")
    for name in names:
        if name not in TABLE_NAMES:
            raise BadInput(f"--tables {name!r}: not a table of the data model ({', '.join(TABLE_NAMES)}, or '{EVERY}')")
    return dict.fromkeys(names)


def parse_data(ws: Workspace, tables: str, columns: str | None) -> dict[str, tuple[str, ...] | None] | None:
    """``--tables`` and ``--columns patients.sex,diagnoses.orpha_code`` as the permit stores them: a table some
    of whose columns are named gets those, and always its patient key (:data:`EXTRACT_KEY`, which links its
    rows to the patient's other rows and shows nothing of its own); the others every column. Column names are
    the extracts' (as ``rk.load()`` shows them), checked against the newest extract."""
    chosen = parse_tables(tables)
    named = [c.strip() for c in (columns or "").split(",") if c.strip()]
    if not named:
        return chosen
    data: dict[str, tuple[str, ...] | None] = dict(chosen) if chosen is not None else dict.fromkeys(TABLE_NAMES)
    extracts = list_extracts(ws)
    if not extracts:
        raise BadInput("--columns: there is no extract yet whose columns a permit could name (name tables only)")
    held = _columns(extracts[-1])
    picked: dict[str, list[str]] = {}
    for name in named:
        table, dot, col = name.partition(".")
        if not dot or not table or not col:
            raise BadInput(f"--columns {name!r}: write table.column, e.g. patients.sex")
        if table not in data:
            raise BadInput(f"--columns {name!r}: table {table} is not among --tables")
        if col not in held.get(table, ()):
            known = ", ".join(c for c in held.get(table, ()) if c != EXTRACT_KEY)
            raise BadInput(f"--columns {name!r}: the extracts' {table} table has no column {col!r} ({known})")
        picked.setdefault(table, [EXTRACT_KEY]).append(col)
    for table, cols in picked.items():
        data[table] = tuple(dict.fromkeys(cols))
    return data


def _columns(extract: Extract) -> dict[str, list[str]]:
    import polars as pl

    return {
        t: list(pl.read_parquet_schema(extract.table_path(t))) for t in TABLE_NAMES if extract.table_path(t).is_file()
    }


def parse_versions(ws: Workspace, text: str | None) -> str | None:
    """``--versions ID,ID`` (extract versions, each registered) or ``new`` (every version built until the permit
    ends), as the permit stores it; None when not given."""
    if text is None:
        return None
    names = [v.strip() for v in text.split(",") if v.strip()]
    if names == [permits.NEW_VERSIONS]:
        return permits.NEW_VERSIONS
    if not names:
        raise BadInput(f"--versions: name extract versions, or '{permits.NEW_VERSIONS}'")
    known = {e.id for e in list_extracts(ws)}
    for name in names:
        if name not in known:
            raise BadInput(f"--versions {name!r}: no such extract (see 'research-kit extract list')")
    return ",".join(dict.fromkeys(names))


def parse_users(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def parse_until(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--until {text!r}: a date as YYYY-MM-DD") from None


def _rho(ws: Workspace, rho: Typed | None) -> Decimal | None:
    return rho_from(rho, None, ws.policy().dp.delta) if rho is not None else None


def apply(
    ws: Workspace,
    *,
    actor: str,
    study: str,
    holder: str,
    purpose: str,
    category: str,
    tier: str,
    tables: str,
    until: str,
    users_named: str | None = None,
    rho: Typed | None = None,
    columns: str | None = None,
    versions: str | None = None,
) -> Permit:
    """A researcher applies for a data permit for ``study``: they and ``users_named`` its users."""
    check_name(study, "study")
    asked = _rho(ws, rho)
    data, chosen = parse_data(ws, tables, columns), parse_versions(ws, versions)
    with audit.acting(actor), ws.catalog() as conn, transaction(conn):
        return permits.apply(
            conn, ws.audit_path, study=study, holder=holder, purpose=purpose, category=category, tier=tier,
            data=data, until=parse_until(until), users_named=parse_users(users_named),
            rho_asked=str(asked) if asked is not None else None, versions=chosen or permits.NEW_VERSIONS,
        )  # fmt: skip


def decide(
    ws: Workspace,
    *,
    actor: str,
    permit_id: int,
    legal_basis: str,
    note: str = "",
    rho: Typed | None = None,
    optout_exception: str = "",
    continues: int | None = None,
) -> Permit:
    """A committee member grants an application, with its legal basis, and (``rho``) its study's budget."""
    with audit.acting(actor), ws.catalog() as conn, transaction(conn):
        permit = permits.grant(
            conn, ws.audit_path, permit_id, legal_basis=legal_basis, note=note, optout_exception=optout_exception,
            continuation_of=continues,
        )  # fmt: skip
        _budget(conn, ws, permit, _rho(ws, rho), actor, note)
        return permit


def grant_directly(
    ws: Workspace,
    *,
    actor: str,
    study: str,
    users_named: str,
    holder: str,
    purpose: str,
    category: str,
    tier: str,
    tables: str,
    until: str,
    legal_basis: str,
    rho: Typed | None = None,
    note: str = "",
    optout_exception: str = "",
    columns: str | None = None,
    versions: str | None = None,
) -> Permit:
    """A committee member grants a permit nobody applied for (the application and its grant, one transaction)."""
    check_name(study, "study")
    named = parse_users(users_named)
    if not named:
        raise BadInput("--users: name the permit's users (researchers), comma-separated")
    amount = _rho(ws, rho)
    data, chosen = parse_data(ws, tables, columns), parse_versions(ws, versions)
    with audit.acting(actor), ws.catalog() as conn, transaction(conn):
        applied = permits.apply(
            conn, ws.audit_path, study=study, holder=holder, purpose=purpose, category=category, tier=tier,
            data=data, until=parse_until(until), users_named=named,
            rho_asked=str(amount) if amount is not None else None, by_committee=True,
            versions=chosen or permits.NEW_VERSIONS,
        )  # fmt: skip
        permit = permits.grant(
            conn, ws.audit_path, applied.id, legal_basis=legal_basis, note=note, optout_exception=optout_exception
        )
        _budget(conn, ws, permit, amount, actor, note)
        return permit


def _budget(
    conn: sqlite3.Connection, ws: Workspace, permit: Permit, amount: Decimal | None, actor: str, note: str
) -> None:
    """The study's budget grant that comes with a permit of the dp or real tier."""
    if amount is None:
        return
    if permit.tier == "twin":
        raise BadInput("--rho: a permit of the twin tier queries no real data; it has no budget")
    policy = ws.policy().dp
    ledger._add_grant(
        conn, ws, permit.study, to_picorho(amount, round_up=False), actor, note or f"permit {permit.id}",
        ceiling=policy.max_study_rho, key="max_study_rho", what=f"study {permit.study}", action="dp.grant",
        details={"study": permit.study, "permit": permit.id},
    )  # fmt: skip


def refuse(ws: Workspace, *, actor: str, permit_id: int, note: str) -> Permit:
    with audit.acting(actor), ws.catalog() as conn, transaction(conn):
        return permits.refuse(conn, ws.audit_path, permit_id, note=note)


def revoke(ws: Workspace, *, actor: str, permit_id: int, note: str) -> Permit:
    with audit.acting(actor), ws.catalog() as conn, transaction(conn):
        return permits.revoke(conn, ws.audit_path, permit_id, note=note)


def amend(
    ws: Workspace,
    *,
    actor: str,
    permit_id: int,
    note: str,
    users_named: str | None = None,
    tier: str | None = None,
    tables: str | None = None,
    until: str | None = None,
    purpose: str | None = None,
    holder: str | None = None,
    category: str | None = None,
    optout_exception: str | None = None,
    columns: str | None = None,
    versions: str | None = None,
) -> Permit:
    """A committee member changes a permit (what is not given stays), saying why."""
    if columns is not None and tables is None:
        raise BadInput("--columns: give --tables with it (the permit's data is named whole)")
    data = parse_data(ws, tables, columns) if tables is not None else permits.KEEP
    chosen = parse_versions(ws, versions)
    with audit.acting(actor), ws.catalog() as conn, transaction(conn):
        return permits.amend(
            conn, ws.audit_path, permit_id, note=note,
            users_named=parse_users(users_named) if users_named is not None else None, tier=tier, data=data,
            until=parse_until(until) if until is not None else None, purpose=purpose, holder=holder,
            category=category, optout_exception=optout_exception, versions=chosen,
        )  # fmt: skip


def _visible(conn: sqlite3.Connection, actor: str) -> tuple[bool, set[str]]:
    """Whether ``actor`` sees every permit (committee, steward), and the studies they are a user of."""
    user = users.get(conn, actor)
    if user is None or not user.active:
        raise PolicyRefusal(f"{actor!r} is not an active user of this workspace")
    every = bool(user.roles & {Role.COMMITTEE, Role.STEWARD})
    return every, permits.studies_of(conn, actor)


def listed(ws: Workspace, *, actor: str, study: str | None = None) -> list[Permit]:
    """The permits ``actor`` may see (the committee and stewards: all; a researcher: those naming them or that
    they applied for), newest first; of one ``study`` if given."""
    with ws.catalog() as conn:
        every, _ = _visible(conn, actor)
        found = permits.of_study(conn, study) if study else permits.listed(conn)
    return [p for p in found if every or actor in p.users or p.applied_by == actor]


def shown(ws: Workspace, *, actor: str, permit_id: int) -> Permit:
    with ws.catalog() as conn:
        every, _ = _visible(conn, actor)
        permit = permits.get(conn, permit_id)
    if not every and actor not in permit.users and permit.applied_by != actor:
        raise PolicyRefusal(f"permit {permit_id} does not name {actor}: only its users and the committee read it")
    return permit


def ending_soon(ws: Workspace, *, actor: str) -> list[Permit]:
    """Permits in force ending within ``[permits].notice_days`` that ``actor`` may see."""
    days = ws.policy().permits.notice_days
    seen = {p.id for p in listed(ws, actor=actor)}
    with ws.catalog() as conn:
        return [p for p in permits.ending_soon(conn, days) if p.id in seen]


def record_results(ws: Workspace, *, actor: str, permit_id: int, status: str, reference: str = "") -> Permit:
    """A permit's user or a committee member records where its results stand; audited."""
    with audit.acting(actor), ws.catalog() as conn, transaction(conn):
        return permits.record_publication(conn, ws.audit_path, permit_id, status=status, reference=reference)


def overdue(ws: Workspace, *, actor: str) -> list[Permit]:
    """Ended permits ``actor`` may see whose results are past due (``[permits].results_due_months``) and not
    recorded as published."""
    months = ws.policy().permits.results_due_months
    seen = {p.id for p in listed(ws, actor=actor)}
    with ws.catalog() as conn:
        return [p for p in permits.overdue(conn, months) if p.id in seen]


@dataclass(frozen=True)
class Closed:
    permit: Permit
    done: str  # "archived to PATH", "deleted", "nothing to archive", "skipped: ..."


def close_ended(ws: Workspace, *, actor: str) -> list[Closed]:
    """The steward closes every ended (or revoked) permit of a study with no permit in force: its work folder
    (action results, their outputs, notebooks) is archived under ``archive/permits/`` or deleted, as
    ``[permits].on_end`` says, and its unreleased outputs can no longer be submitted or released. Each close is
    audited with what was done; a study whose run still holds its lock is skipped, to be closed next time."""
    on_end = ws.policy().permits.on_end
    archive = ws.root / ARCHIVE
    for stale in archive.glob(".trash-*") if archive.is_dir() else ():  # a delete a kill cut short
        shutil.rmtree(stale, ignore_errors=True)
    out = []
    with audit.acting(actor):
        with ws.catalog() as conn:
            users.require(conn, actor, Duty.CLOSE_PERMITS)
            pending = permits.to_close(conn)
        for permit in pending:
            folder = studies_dir(ws) / permit.study
            try:
                with hold(folder / ".lock", f"a run of study {permit.study!r}"):
                    out.append(_close(ws, permit, folder, on_end))
            except Busy as busy:
                out.append(Closed(permit, f"skipped: {busy}"))
    return out


ARCHIVE = "archive/permits"


def _close(ws: Workspace, permit: Permit, folder: Path, on_end: str) -> Closed:
    """Move the study's folder out of reach (one rename), then record the close with its audit line."""
    with ws.catalog() as conn:
        open_requests = conn.execute(
            "SELECT COUNT(*) FROM requests WHERE study = ? AND state != 'released'", (permit.study,)
        ).fetchone()[0]
    archive = ws.root / ARCHIVE
    archive.mkdir(mode=0o700, parents=True, exist_ok=True)
    held = any(p.name != ".lock" for p in folder.iterdir()) if folder.is_dir() else False
    target = archive / (f"{permit.study}-permit-{permit.id}" if on_end == "archive" else f".trash-{permit.id}")
    if held:
        os.replace(folder, target)
    done = ("archived to " + str(target) if on_end == "archive" else "deleted") if held else "nothing to archive"
    with ws.catalog() as conn, transaction(conn):
        permits.mark_closed(conn, ws.audit_path, permit, {"on_end": on_end, "work": done,
                                                          "unreleased_requests": int(open_requests)})  # fmt: skip
    if held and on_end == "delete":
        shutil.rmtree(target, ignore_errors=True)
    return Closed(permit, done)
