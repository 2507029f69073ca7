"""The public transparency register: how the registry's data are used, as a static site anyone may read.

``research-kit transparency publish OUT`` writes, in English, French and German (and each language whose complete
catalog the policy supplies, :func:`research_kit.core.i18n.offered`):

- ``OUT/index.html``: the choice of language;
- ``OUT/LANG/index.html``: every data permit (purpose and category, holder, period, data, tier, state, privacy
  budget spent, results and their publication against the duty of EHDS Art. 61), the results released (dates
  and SHA-256 checksums), the opt-out count of each quarter that has ended (no total) and the extract versions;
- ``OUT/LANG/permits/N.html``: one permit whole, with its releases;
- ``OUT/register.json``: the same facts as data (codes rather than words);
- ``OUT/.research-kit-transparency-register``: the marker that lets a later publication replace this one.

Everything comes from the catalog: permits, the budget ledger, review requests and releases, the extract
register, and the opt-out register's dates (counted, never an entry). Nothing is read from a patient row.
Permit users are named only when ``[transparency].publish_user_names`` says so; the committee's notes, who
decided and who applied are never published. Pages need no script and load nothing from elsewhere (a
Content-Security-Policy says so to the browser); every text is escaped by the template.

The site is written into a staging folder beside ``OUT`` and swapped into place whole (atomically where the
filesystem can exchange two folders): a reader sees the old register or the new one, never half of one.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jinja2

from research_kit import __version__
from research_kit.core import audit, permits
from research_kit.core.catalog import transaction
from research_kit.core.config import Policy
from research_kit.core.errors import MissingData, PolicyRefusal
from research_kit.core.i18n import BUILT_IN, SOURCE, Languages, offered
from research_kit.core.locks import alive
from research_kit.core.permits import REGISTRY_TWIN, Permit
from research_kit.core.workspace import Workspace
from research_kit.dp.accounting import epsilon_of, from_picorho, rho_text
from research_kit.tiers import place_twin
from research_kit.transparency import labels

MARKER = ".research-kit-transparency-register"  # in OUT: a folder holding it is a register a publication replaces
FORMAT = 2  # register.json's "format": a change of its shape is a new number
TEMPLATES = Path(__file__).resolve().parent / "templates"
STAGING = ".staging-"  # OUT's sibling .NAME.staging-PID while a publication writes it
DIR_MODE, FILE_MODE = 0o755, 0o644  # the register is public


@dataclass(frozen=True)
class Published:
    """What a publication wrote: the folder, and how many permits, releases and pages it holds."""

    out: Path
    permits: int
    releases: int
    pages: int
    languages: tuple[str, ...]


# -- reading the catalog --------------------------------------------------------------------------------------------


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def granted_permits(found: Sequence[Permit]) -> list[Permit]:
    """A study's permits that were granted (in force, ended or revoked), in the order they were granted."""
    done = [p for p in found if p.state in ("granted", "revoked") and p.decided_at]
    return sorted(done, key=lambda p: (_at(p.decided_at or ""), p.id))


def permit_at(granted: Sequence[Permit], when: str) -> Permit | None:
    """The permit (of :func:`granted_permits`) under which something of its study happened at ``when``: the last one
    granted before it. A study has at most one permit in force at a time, and its runs, queries and releases
    need one, so this is the permit in force then (an ended permit's release: the permit that ended). What came
    before every permit (a budget spent before permits existed) counts under the study's first."""
    if not granted:
        return None
    moment = _at(when)
    before = [p for p in granted if _at(p.decided_at or "") <= moment]
    return before[-1] if before else granted[0]


def _quarter(day: date) -> tuple[int, int]:
    return day.year, (day.month - 1) // 3 + 1


def _quarters(first: date, last: date) -> list[tuple[int, int]]:
    year, q = _quarter(first)
    end = _quarter(last)
    out = []
    while (year, q) <= end:
        out.append((year, q))
        year, q = (year + 1, 1) if q == 4 else (year, q + 1)
    return out


def shown_count(n: int, min_count: int, rounding: int) -> dict[str, int | None]:
    """A count as the register shows it: below ``min_count``, only "fewer than min_count" (zero too, so that a
    zero tells nothing either); otherwise rounded to the nearest multiple of ``rounding`` (halves up)."""
    if n < min_count:
        return {"count": None, "fewer_than": min_count}
    return {"count": (2 * n + rounding) // (2 * rounding) * rounding, "fewer_than": None}


def _optouts(conn: sqlite3.Connection, first_extract: str | None, policy: Policy, today: date) -> dict[str, Any]:
    """Opt-outs counted per quarter of the day each was recorded, suppressed and rounded as the policy says.

    Only quarters that ended before ``today`` are published: an ended quarter's count never changes (a backdated
    opt-out is counted when it was recorded), so two publications show the same figures whatever was recorded
    between them; the quarter under way appears once it has ended. No total is published: one rounded from the
    exact counts, set against the quarters, would tell whether a quarter shown as "fewer than N" holds anyone."""
    rule = policy.transparency
    recorded = [_at(r[0]).date() for r in conn.execute("SELECT recorded_at FROM optouts")]
    starts = [d for d in (min(recorded, default=None), _at(first_extract).date() if first_extract else None) if d]
    per: dict[tuple[int, int], int] = {}
    for day in recorded:
        per[_quarter(day)] = per.get(_quarter(day), 0) + 1
    current = _quarter(today)
    quarters = [yq for yq in _quarters(min(starts), today) if yq < current] if starts else []
    return {
        "counted_by": "the quarter of the day each opt-out was recorded",
        "min_count": rule.optout_min_count,
        "rounding": rule.optout_rounding,
        "by_quarter": [
            {"quarter": f"{y}-Q{q}", **shown_count(per.get((y, q), 0), rule.optout_min_count, rule.optout_rounding)}
            for y, q in quarters
        ],
    }


def _data(permit: Permit) -> list[dict[str, Any]] | None:
    if permit.data is None:
        return None
    return [{"table": t, "columns": list(c) if c is not None else None} for t, c in permit.data.items()]


def _ledger(conn: sqlite3.Connection, table: str, study: str) -> list[tuple[str, int]]:
    """(when, picorho) of a study's real-tier grants or spends (a reservation counts: its answer may have been
    seen, as the ledger's balance counts it)."""
    when = "granted_at" if table == "dp_grants" else "reserved_at"
    rows = conn.execute(f"SELECT {when}, picorho FROM {table} WHERE study = ? AND tier = 'real'", (study,))
    return [(str(r[0]), int(r[1])) for r in rows]


def _permit_entry(
    conn: sqlite3.Connection,
    permit: Permit,
    granted: Sequence[Permit],
    overdue: set[int],
    policy: Policy,
    today: date,
) -> dict[str, Any]:
    status = permit.status(today)
    was_granted = permit.state in ("granted", "revoked")
    entry: dict[str, Any] = {
        "id": permit.id,
        "for": "registry-twin" if permit.study == REGISTRY_TWIN else "study",
        "study": permit.study,
        "status": status,
        "purpose": permit.purpose,
        "category": permit.category,
        "holder": permit.holder,
        "tier": permit.tier,
        "data": _data(permit),
        "versions": permit.versions if permit.versions == permits.NEW_VERSIONS else permit.versions.split(","),
        "applied_on": permit.applied_at[:10],
        "granted_on": (permit.decided_at or "")[:10] if was_granted else None,
        "until": permit.until.isoformat(),
        "ended_on": (permit.revoked_at or "")[:10] if permit.state == "revoked" else (
            permit.until.isoformat() if status == permits.EXPIRED else None),
        "refused_on": (permit.decided_at or "")[:10] if permit.state == "refused" else None,
        "legal_basis": permit.legal_basis,
        "optout_exception": permit.optout_exception,
        "continues": permit.continuation_of,
        "budget": None,
        "results": None,
    }  # fmt: skip
    if policy.transparency.publish_user_names:
        entry["users"] = list(permit.users)
    if was_granted:
        delta = policy.dp.delta
        mine = [(w, n) for w, n in _ledger(conn, "dp_spends", permit.study) if permit_at(granted, w) is permit]
        given = [(w, n) for w, n in _ledger(conn, "dp_grants", permit.study) if permit_at(granted, w) is permit]
        spent = sum(n for _, n in mine)
        entry["budget"] = {
            "rho_granted": rho_text(sum(n for _, n in given)),
            "rho_spent": rho_text(spent),
            "epsilon_spent": round(epsilon_of(from_picorho(spent), delta), 6),
            "delta": delta,
            "queries": len(mine),
        }
        status_code, _, reference = permit.publication.partition(": ")
        months = policy.permits.results_due_months
        entry["results"] = {
            "status": status_code,
            "reference": reference,
            "due": permits.results_due(permit, months).isoformat(),
            "overdue": permit.id in overdue,
        }
    return entry


def _releases(conn: sqlite3.Connection, granted_by_study: dict[str, list[Permit]]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, study, released_at, bundle_sha256 FROM requests WHERE state = 'released' ORDER BY released_at, id"
    ).fetchall()
    found = []
    for row in rows:
        outputs = conn.execute(
            "SELECT action, name, sha256, extract FROM request_outputs WHERE request = ? AND active = 1"
            " AND status != 'gated' ORDER BY action, name",
            (row["id"],),
        ).fetchall()
        permit = permit_at(granted_by_study.get(row["study"], []), row["released_at"])
        found.append({
            "request": row["id"],
            "study": row["study"],
            "permit": permit.id if permit is not None else None,
            "released_on": row["released_at"][:10],
            "bundle_sha256": row["bundle_sha256"],
            "outputs": [{"name": f"{o['action']}/{o['name']}", "sha256": o["sha256"], "extract": o["extract"]}
                        for o in outputs],
        })  # fmt: skip
    return found


def languages_of(ws: Workspace) -> Languages:
    """The register's languages: the built-in ones and those the policy supplies, an incomplete or unreadable
    supplied catalog refused in one line naming its file and its first missing message."""
    return offered(ws.root, ws.policy().transparency.extra_catalogs)


def gather(
    ws: Workspace, *, today: date | None = None, now: datetime | None = None, languages: Languages = BUILT_IN
) -> dict[str, Any]:
    """The register as data (what ``register.json`` holds), read from the catalog in one read transaction."""
    moment = now or datetime.now(UTC)
    day = today or moment.date()
    policy = ws.policy()
    with ws.catalog() as conn:
        conn.execute("BEGIN")
        try:
            every = sorted(permits.listed(conn), key=lambda p: p.id)
            by_study: dict[str, list[Permit]] = {}
            for p in every:
                by_study.setdefault(p.study, []).append(p)
            granted = {study: granted_permits(found) for study, found in by_study.items()}
            late = {p.id for p in permits.overdue(conn, policy.permits.results_due_months, day)}
            entries = [_permit_entry(conn, p, granted[p.study], late, policy, day) for p in every]
            releases = _releases(conn, granted)
            extracts = conn.execute("SELECT id, created_at FROM extracts ORDER BY created_at, id").fetchall()
            optouts = _optouts(conn, extracts[0]["created_at"] if extracts else None, policy, day)
        finally:
            conn.execute("COMMIT")
    for entry in entries:
        entry["releases"] = [r["request"] for r in releases if r["permit"] == entry["id"]]
    return {
        "format": FORMAT,
        "published_at": moment.isoformat(timespec="seconds"),
        "generator": f"research-kit {__version__}",
        "languages": list(languages.names),
        "policy": {
            "delta": policy.dp.delta,
            "results_due_months": policy.permits.results_due_months,
            "user_names_published": policy.transparency.publish_user_names,
        },
        "permits": entries,
        "releases": releases,
        "extracts": [{"id": e["id"], "created_on": e["created_at"][:10]} for e in extracts],
        "optouts": optouts,
    }


# -- the pages ------------------------------------------------------------------------------------------------------


def _switch(languages: Languages, path: str, depth: int) -> list[tuple[str, str, str]]:
    """The language switch of a page at ``LANG/path``: (code, name, relative link) for each language."""
    up = "../" * depth
    return [(code, name, f"{up}{code}/{path}") for code, name in languages.names.items()]


def pages(register: dict[str, Any], languages: Languages = BUILT_IN) -> dict[str, str]:
    """Every HTML page of the register, by its path under ``OUT`` (the JSON and the marker aside)."""
    loader = jinja2.FileSystemLoader(TEMPLATES)
    context = {"reg": register, "labels": labels}
    out: dict[str, str] = {}
    for lang in languages.names:
        env = languages.environment(loader, lang, generator=register["generator"])
        index = env.get_template("register.html")
        out[f"{lang}/index.html"] = index.render(context, switch=_switch(languages, "index.html", 1), root="../")
        page = env.get_template("permit.html")
        for permit in register["permits"]:
            path = f"permits/{permit['id']}.html"
            shown = [r for r in register["releases"] if r["permit"] == permit["id"]]
            out[f"{lang}/{path}"] = page.render(
                context, permit=permit, releases=shown, switch=_switch(languages, path, 2), root="../../"
            )
    choices = [
        (code, name, languages.gettext(code)(labels.REGISTER_TITLE), languages.gettext(code)(labels.REGISTER_SUBTITLE))
        for code, name in languages.names.items()
    ]
    landing = languages.environment(loader, SOURCE, generator=register["generator"]).get_template("landing.html")
    out["index.html"] = landing.render(context, choices=choices, switch=[], root="")
    return out


# -- writing --------------------------------------------------------------------------------------------------------


def check_target(out: Path) -> None:
    """Refuse, in one line, a folder a publication may not replace: anything but a previous register."""
    if not out.parent.is_dir():
        raise MissingData(f"{out.parent}: no such folder (the register's folder is made inside one)")
    if out.is_symlink() or (out.exists() and not (out.is_dir() and (out / MARKER).is_file())):
        raise PolicyRefusal(
            f"{out} exists and is not a transparency register (no {MARKER} in it): name a new folder, or remove it"
        )


def _write(folder: Path, register: dict[str, Any], languages: Languages) -> int:
    files = pages(register, languages)
    files["register.json"] = json.dumps(register, indent=2, ensure_ascii=False) + "\n"
    files[MARKER] = json.dumps({"format": FORMAT, "published_at": register["published_at"]}) + "\n"
    for name, text in files.items():
        path = folder / name
        for parent in reversed(path.relative_to(folder).parents[:-1]):
            (folder / parent).mkdir(mode=DIR_MODE, exist_ok=True)
            (folder / parent).chmod(DIR_MODE)
        path.write_text(text, encoding="utf-8")
        path.chmod(FILE_MODE)
    return sum(1 for n in files if n.endswith(".html"))


def _clear_staged(out: Path) -> None:
    """Remove staging folders of publications that died before placing theirs (their process is gone)."""
    for staged in out.parent.glob(f".{glob.escape(out.name)}{STAGING}*"):
        pid = staged.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not alive(int(pid)) and staged.is_dir():
            shutil.rmtree(staged, ignore_errors=True)


def publish(ws: Workspace, out: Path, *, today: date | None = None) -> Published:
    """Write the register to ``out`` (a new folder, or a previous register, replaced whole), audited as
    ``transparency.publish`` with what it holds. The acting user's right to publish is the caller's check."""
    out = Path(os.path.abspath(out))
    check_target(out)
    languages = languages_of(ws)
    register = gather(ws, today=today, languages=languages)
    _clear_staged(out)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGING}", suffix=f"-{os.getpid()}", dir=out.parent))
    try:
        staged.chmod(DIR_MODE)
        written = _write(staged, register, languages)
        with ws.catalog() as conn, transaction(conn):
            check_target(out)  # again: something may have taken the name meanwhile
            audit.append(conn, ws.audit_path, "transparency.publish", {
                "out": str(out), "permits": len(register["permits"]), "releases": len(register["releases"]),
                "pages": written, "languages": list(languages.names),
            })  # fmt: skip
            place_twin(staged, out)  # an atomic exchange with the previous register where the filesystem allows
    finally:
        if staged.exists():  # the previous register after an exchange, or this one if anything failed
            shutil.rmtree(staged, ignore_errors=True)
    return Published(out, len(register["permits"]), len(register["releases"]), written, tuple(languages.names))
