"""The opt-out register: people who opted out of the secondary use of their health data (EHDS), as keyed hashes.

An entry is the hex HMAC-SHA256 of the person's normalised national ID under
the key's ``optout`` purpose key: never the ID in clear, and never the
extract pseudonym (another purpose key), so that the register cannot be
joined to an extract without the pseudonymisation key. The register lives in
the catalog (table ``optouts``: the hash, the date the opt-out took effect,
who recorded it and when); its version (:class:`~research_kit.core.extracts.OptoutRegister`)
is recorded in each extract's manifest.

- Recording is the steward's (``Duty.RECORD_OPTOUT``), all or nothing, in one
  catalog transaction with its audit line, which holds counts only. Recording
  a person already in the register keeps the first entry (and its date) and
  counts them as already recorded.
- Ingest (:mod:`research_kit.ingest.pipeline`) withholds every patient whose
  hash is in the register, with all their rows in every table.
- National IDs are read one per line (:func:`read_lines`) or from a CSV or
  text file (:func:`read_file`); a malformed one refuses the whole input,
  naming its line or row, never its value.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NoReturn

import polars as pl

from research_kit.core import audit, users
from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput, MissingData
from research_kit.core.extracts import OptoutRegister, optout_register
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.model.national_id import is_valid
from research_kit.pseudonymise.keys import Key
from research_kit.pseudonymise.pseudonyms import normalise_national_id

PURPOSE = "optout"  # the purpose key's label: Key.derive("optout")
HEADER = "national_id"
DATE_HEADERS = ("date", "effective")
CHUNK = 250_000  # national IDs hashed per batch at ingest
DELIMITERS = ",;\t"
NOTHING_RECORDED = "nothing was recorded"


@dataclass(frozen=True, repr=False)
class Entry:
    """One person to record: their national ID (normalised; never shown: see ``__repr__``) and, when the input
    gave one, the date their opt-out took effect."""

    national_id: str
    effective: date | None = None

    def __repr__(self) -> str:
        return f"Entry(effective={self.effective!r})"


@dataclass(frozen=True)
class Recorded:
    """What a recording did: entries added, people already in the register (their first entry kept), and the
    register afterwards."""

    recorded: int
    already: int
    register: OptoutRegister


def person_hash(key: Key, national_id: str) -> str:
    """A register entry: hex HMAC-SHA256 of the normalised national ID under the ``optout`` purpose key."""
    mac = hmac.new(key.derive(PURPOSE), normalise_national_id(national_id).encode(), hashlib.sha256)
    return mac.hexdigest()


def person_hashes(key: Key, national_ids: pl.Series) -> pl.Series:
    """The register entries of many national IDs, in their order (one HMAC each from a keyed state computed
    once, in chunks: only a chunk's digests are alive at once)."""
    keyed = hmac.new(key.derive(PURPOSE), digestmod=hashlib.sha256)

    def mac(national_id: str) -> str:
        state = keyed.copy()
        state.update(normalise_national_id(national_id).encode())
        return state.hexdigest()

    parts = [
        pl.Series([mac(x) for x in national_ids.slice(start, CHUNK).to_list()], dtype=pl.String)
        for start in range(0, len(national_ids), CHUNK)
    ]
    return pl.concat(parts) if parts else pl.Series([], dtype=pl.String)


def _national_id(text: str, where: str, outcome: str = NOTHING_RECORDED) -> str:
    """``text`` as a national ID (digits only, as pseudonyms normalise it), or a refusal naming ``where`` only
    (and ``outcome``: what the refusal left undone)."""
    value = normalise_national_id(text.strip())
    if not is_valid(value):
        raise BadInput(
            f"{where}: not a national ID (13 digits: a real date of birth and both check digits right); {outcome}"
        )
    return value


def _date(text: str, where: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else _bad_date(where)
    except ValueError:
        return _bad_date(where)


def _bad_date(where: str) -> NoReturn:
    raise BadInput(f"{where}: the date is not a real YYYY-MM-DD date; nothing was recorded")


def read_lines(lines: Iterable[str], name: str = "standard input", *, outcome: str = NOTHING_RECORDED) -> list[Entry]:
    """National IDs one per line (blank lines and surrounding spaces ignored); a bad line refuses them all,
    naming its number (from 1), never its value, and ``outcome`` (what was left undone). Opt-outs read them
    so, and so does a person's "where was my data used?" letter."""
    entries = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            entries.append(Entry(_national_id(line, f"{name}: line {number}", outcome)))
    if not entries:
        raise BadInput(f"{name}: no national ID (give one per line); {outcome}")
    return entries


def read_file(path: Path) -> list[Entry]:
    """A CSV or plain text file of national IDs: an optional header ``national_id`` (and ``date`` or
    ``effective``), one person a row, an optional second column with the date their opt-out took effect
    (comma, semicolon or tab between the two). Blank rows are skipped; a bad row refuses the whole file,
    naming the file and the row (from 1, the header included), never its value."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MissingData(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: a folder, not a file of national IDs") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text; nothing was recorded") from None
    top = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = next((d for d in DELIMITERS if d in top), ",")
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        return _entries(path, rows)
    except csv.Error:  # a field longer than the csv module takes, a NUL byte ...
        raise BadInput(f"{path}: row {rows.line_num}: not a CSV of national IDs; nothing was recorded") from None


def _entries(path: Path, rows: Iterable[list[str]]) -> list[Entry]:
    entries: list[Entry] = []
    first = True
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        where = f"{path}: row {number}"
        header, first = first and cells[0].lower() == HEADER, False
        if header:
            if len(cells) > 2 or (len(cells) == 2 and cells[1].lower() not in DATE_HEADERS):
                raise BadInput(f"{where}: the header is national_id, then optionally date (or effective)")
            continue
        if len(cells) > 2:
            raise BadInput(f"{where}: {len(cells)} columns; give a national ID and optionally its date")
        found = Entry(_national_id(cells[0], where), _date(cells[1], f"{where}: date") if len(cells) == 2 else None)
        entries.append(found)
    if not entries:
        raise BadInput(f"{path}: no national ID in the file; nothing was recorded")
    return entries


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record(ws: Workspace, key: Key, entries: list[Entry], *, effective: date | None = None) -> Recorded:
    """Record ``entries`` (the acting steward), each effective on its own date, else ``effective``, else today:
    all in one catalog transaction with one audit line (counts only). A person already in the register keeps
    their first entry and is counted as already recorded. A date after today is refused."""
    today = date.today()
    dates = [e.effective or effective or today for e in entries]
    if any(d > today for d in dates):
        raise BadInput(f"the date an opt-out took effect is after today ({today}); nothing was recorded")
    by, now = audit.current_actor(), _now()
    recorded = 0
    with ws.catalog() as conn, transaction(conn):
        users.require(conn, by, Duty.RECORD_OPTOUT)
        for entry, when in zip(entries, dates, strict=True):
            added = conn.execute(
                "INSERT INTO optouts (person, effective, recorded_by, recorded_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (person) DO NOTHING",
                (person_hash(key, entry.national_id), when.isoformat(), by, now),
            ).rowcount
            recorded += added
        register = optout_register(conn)
        audit.append(
            conn,
            ws.audit_path,
            "optout.record",
            {"recorded": recorded, "already": len(entries) - recorded, "register_version": register.version},
        )
    return Recorded(recorded, len(entries) - recorded, register)


def current(ws: Workspace) -> OptoutRegister:
    """The register's count and version (no entry, no hash)."""
    with ws.catalog() as conn:
        return optout_register(conn)


def register_hashes(ws: Workspace) -> tuple[frozenset[str], OptoutRegister]:
    """Every entry of the register and its version, read together (one read transaction): what ingest
    withholds, and what the extract's manifest says it was built against."""
    with ws.catalog() as conn:
        conn.execute("BEGIN")
        try:
            hashes = frozenset(row[0] for row in conn.execute("SELECT person FROM optouts"))
            register = optout_register(conn)
        finally:
            conn.execute("COMMIT")
    return hashes, register
