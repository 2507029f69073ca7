"""Each study's pseudonym secret: 32 random bytes, made once per study and data permit, kept in the catalog.

A secret belongs to a study's permit (its name, ``STUDY#permit-N``, from
:func:`research_kit.core.permits.pseudonym_line`): a new permit for the same
study sees new pseudonyms, unless the committee recorded it as the
continuation of an earlier one, whose secret it keeps. The functions below
take that name.

A study's actions see its patients under study pseudonyms (HMAC-SHA256 of
the extract pseudonym under this secret, :func:`~research_kit.pseudonymise.pseudonyms.study_pseudonyms`),
so that two studies' outputs cannot be joined patient by patient. The secret
is not derived from the pseudonymisation key: the runner, which makes the
views, never holds that key. It is made by the study's first run (from
:mod:`secrets`), inside a catalog transaction that takes the write lock, so
two runs starting at once make one; the audit log records that it was made
(``study.secret.create``, naming the study), never the secret. It lives in
the catalog's ``study_secrets`` table, so a snapshot of the workspace keeps
it and a restored workspace gives every study the same pseudonyms again. It
is never printed, logged or handed to the sandbox.
"""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from research_kit.core import audit
from research_kit.core.catalog import transaction
from research_kit.core.errors import MissingData

SECRET_BYTES = 32
CREATED = "study.secret.create"  # the audit action: the study is named, the secret never


def stored_secret(conn: sqlite3.Connection, study: str) -> bytes | None:
    """The study's secret, or None if no run of it has made one yet."""
    row = conn.execute("SELECT secret FROM study_secrets WHERE study = ?", (study,)).fetchone()
    return None if row is None else bytes(row[0])


def study_secret(conn: sqlite3.Connection, audit_path: Path, study: str) -> bytes:
    """The study's secret, made (and audited, without it) the first time it is needed."""
    found = stored_secret(conn, study)
    if found is not None:
        return found
    if conn.in_transaction:
        return _make(conn, audit_path, study)
    with transaction(conn):  # BEGIN IMMEDIATE: the write lock, so a second run waits and then finds it
        return _make(conn, audit_path, study)


def require_secret(conn: sqlite3.Connection, study: str) -> bytes:
    """The study's secret, which its run made before handing out its actions (never made here)."""
    found = stored_secret(conn, study)
    if found is None:
        raise MissingData(f"study {study!r} has no pseudonym secret (its run makes it before any action starts)")
    return found


def _make(conn: sqlite3.Connection, audit_path: Path, study: str) -> bytes:
    found = stored_secret(conn, study)
    if found is not None:
        return found
    secret = secrets.token_bytes(SECRET_BYTES)
    conn.execute(
        "INSERT INTO study_secrets (study, secret, created_at) VALUES (?, ?, ?)",
        (study, secret, datetime.now(UTC).isoformat(timespec="seconds")),
    )
    audit.append(conn, audit_path, CREATED, {"study": study})
    return secret
