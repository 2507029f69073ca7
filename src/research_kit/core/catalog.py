"""The workspace catalog: one SQLite file in WAL mode, its schema migrated forward.

The schema version is SQLite's ``user_version``. Migrations are numbered,
applied in order, each in its own transaction, and never edited once shipped:
a change to the schema is a new migration appended to :data:`MIGRATIONS`.
A catalog newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from research_kit.core.errors import BadInput


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "audit head anchor and raw export register",
        (
            # The last audit entry's number and hash: a log cut short is detected by it.
            """CREATE TABLE audit_head (
                   id INTEGER PRIMARY KEY CHECK (id = 1),
                   seq INTEGER NOT NULL,
                   hash TEXT NOT NULL
               )""",
            # Raw (identifiable) exports the steward has placed in the workspace.
            """CREATE TABLE raw_exports (
                   id TEXT PRIMARY KEY,
                   path TEXT NOT NULL,
                   source TEXT NOT NULL,
                   format TEXT NOT NULL,
                   patients INTEGER NOT NULL,
                   seed INTEGER,
                   faults INTEGER NOT NULL DEFAULT 0,
                   created_at TEXT NOT NULL
               )""",
        ),
    ),
    Migration(
        2,
        "pseudonymised extracts",
        (
            """CREATE TABLE extracts (
                   id TEXT PRIMARY KEY,
                   created_at TEXT NOT NULL,
                   content_hash TEXT NOT NULL,
                   key_fingerprint TEXT NOT NULL,
                   patients INTEGER NOT NULL,
                   manifest TEXT NOT NULL
               )""",
        ),
    ),
    Migration(
        3,
        "privacy budget ledger and noise-scale calibrations",
        (
            # Budgets are integers of 1e-12 rho ("picorho"): sums and comparisons are exact.
            # tier: 'real' (the extract; granted by the committee) or 'sandbox' (the synthetic twin).
            """CREATE TABLE dp_grants (
                   id INTEGER PRIMARY KEY,
                   study TEXT NOT NULL,
                   tier TEXT NOT NULL CHECK (tier IN ('real', 'sandbox')),
                   picorho INTEGER NOT NULL CHECK (picorho > 0),
                   granted_by TEXT NOT NULL,
                   granted_at TEXT NOT NULL,
                   note TEXT NOT NULL DEFAULT ''
               )""",
            "CREATE INDEX dp_grants_study ON dp_grants (study, tier)",
            # One row per query: 'reserved' before release, then 'spent' (with its answer)
            # or deleted when the release failed. A reservation left by a crashed
            # process stays counted: nobody can tell whether its answer was seen.
            """CREATE TABLE dp_spends (
                   id INTEGER PRIMARY KEY,
                   study TEXT NOT NULL,
                   tier TEXT NOT NULL CHECK (tier IN ('real', 'sandbox')),
                   state TEXT NOT NULL CHECK (state IN ('reserved', 'spent')),
                   picorho INTEGER NOT NULL CHECK (picorho >= 0),
                   query_key TEXT NOT NULL,
                   source TEXT NOT NULL,
                   source_hash TEXT NOT NULL,
                   query TEXT NOT NULL,
                   mechanism TEXT NOT NULL,
                   scale REAL NOT NULL,
                   who TEXT NOT NULL,
                   pid INTEGER NOT NULL,
                   reserved_at TEXT NOT NULL,
                   spent_at TEXT,
                   answer TEXT
               )""",
            "CREATE INDEX dp_spends_study ON dp_spends (study, tier, state)",
            "CREATE INDEX dp_spends_replay ON dp_spends (study, tier, query_key, source_hash)",
            # The noise scale found once per query shape (OpenDP's binary search).
            """CREATE TABLE dp_calibrations (
                   shape TEXT PRIMARY KEY,
                   scale REAL NOT NULL,
                   opendp TEXT NOT NULL,
                   created_at TEXT NOT NULL
               )""",
        ),
    ),
    Migration(
        4,
        "study pipelines: registrations, runs, cached action results, outputs, reruns",
        (
            # A pipeline is registered by its first run; 'rerun' reruns every registered one.
            """CREATE TABLE pipelines (
                   study TEXT PRIMARY KEY,
                   path TEXT NOT NULL,
                   title TEXT NOT NULL,
                   registered_at TEXT NOT NULL,
                   registered_by TEXT NOT NULL
               )""",
            # The environment an action ran in: package versions (name -> version) and Python.
            """CREATE TABLE environments (
                   hash TEXT PRIMARY KEY,
                   packages TEXT NOT NULL
               )""",
            # One successful execution of an action, found again by its content key.
            """CREATE TABLE action_results (
                   cache_key TEXT PRIMARY KEY,
                   study TEXT NOT NULL,
                   action TEXT NOT NULL,
                   notebook TEXT NOT NULL,
                   notebook_hash TEXT NOT NULL,
                   parameters TEXT NOT NULL,
                   extract TEXT NOT NULL,
                   extract_hash TEXT NOT NULL,
                   upstream TEXT NOT NULL,
                   environment TEXT NOT NULL REFERENCES environments (hash),
                   git_commit TEXT NOT NULL,
                   folder TEXT NOT NULL,
                   started_at TEXT NOT NULL,
                   finished_at TEXT NOT NULL,
                   seconds REAL NOT NULL
               )""",
            """CREATE TABLE action_outputs (
                   cache_key TEXT NOT NULL REFERENCES action_results (cache_key),
                   name TEXT NOT NULL,
                   path TEXT NOT NULL,
                   sensitivity TEXT NOT NULL CHECK (sensitivity IN ('highly_sensitive', 'moderately_sensitive')),
                   sha256 TEXT NOT NULL,
                   bytes INTEGER NOT NULL,
                   PRIMARY KEY (cache_key, name)
               )""",
            """CREATE TABLE runs (
                   id INTEGER PRIMARY KEY,
                   study TEXT NOT NULL,
                   pipeline TEXT NOT NULL,
                   pipeline_hash TEXT NOT NULL,
                   extract TEXT NOT NULL,
                   extract_hash TEXT NOT NULL,
                   git_commit TEXT NOT NULL,
                   executor TEXT NOT NULL,
                   trigger TEXT NOT NULL,
                   actor TEXT NOT NULL,
                   started_at TEXT NOT NULL,
                   finished_at TEXT,
                   outcome TEXT NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted'))
               )""",
            "CREATE INDEX runs_study ON runs (study, id)",
            # What happened to each action in a run: ran, cached (reused), failed or skipped (a need failed).
            """CREATE TABLE run_actions (
                   run_id INTEGER NOT NULL REFERENCES runs (id),
                   action TEXT NOT NULL,
                   outcome TEXT NOT NULL CHECK (outcome IN ('ran', 'cached', 'failed', 'skipped')),
                   cache_key TEXT,
                   seconds REAL NOT NULL,
                   error TEXT NOT NULL DEFAULT '',
                   notebook TEXT NOT NULL DEFAULT '',
                   PRIMARY KEY (run_id, action)
               )""",
            # A moderately_sensitive output of a run, waiting for output checking and review,
            # with its diff against the last released (or, until then, last reviewed) version.
            """CREATE TABLE review_queue (
                   id INTEGER PRIMARY KEY,
                   study TEXT NOT NULL,
                   action TEXT NOT NULL,
                   name TEXT NOT NULL,
                   cache_key TEXT NOT NULL,
                   sha256 TEXT NOT NULL,
                   run_id INTEGER NOT NULL REFERENCES runs (id),
                   extract TEXT NOT NULL,
                   state TEXT NOT NULL DEFAULT 'pending',
                   diff TEXT,
                   queued_at TEXT NOT NULL,
                   UNIQUE (study, action, name, sha256)
               )""",
            # 'research-kit rerun --extract ID': one row per extract; a killed rerun is resumed.
            """CREATE TABLE reruns (
                   extract TEXT PRIMARY KEY,
                   started_at TEXT NOT NULL,
                   finished_at TEXT,
                   state TEXT NOT NULL CHECK (state IN ('running', 'done')),
                   summary TEXT NOT NULL DEFAULT ''
               )""",
        ),
    ),
    Migration(
        5,
        "users and roles; output review requests, their outputs, checks, votes, comments and releases",
        (
            # The workspace's users: the CLI's --as and the web app's sign-in (password set there).
            """CREATE TABLE users (
                   name TEXT PRIMARY KEY,
                   role TEXT NOT NULL CHECK (role IN ('researcher', 'committee', 'steward')),
                   active INTEGER NOT NULL DEFAULT 1,
                   password_hash TEXT,
                   added_at TEXT NOT NULL,
                   added_by TEXT NOT NULL
               )""",
            # A study's outputs on their way out: pending -> submitted -> approved | rejected | returned -> released.
            """CREATE TABLE requests (
                   id INTEGER PRIMARY KEY,
                   study TEXT NOT NULL,
                   author TEXT NOT NULL,
                   state TEXT NOT NULL CHECK (state IN
                       ('pending', 'submitted', 'approved', 'rejected', 'returned', 'released')),
                   created_at TEXT NOT NULL,
                   updated_at TEXT NOT NULL,
                   submitted_at TEXT,
                   released_at TEXT,
                   bundle TEXT,
                   bundle_sha256 TEXT
               )""",
            # One row per output version in a request; a changed output is a new row, the old one inactive.
            """CREATE TABLE request_outputs (
                   id INTEGER PRIMARY KEY,
                   request INTEGER NOT NULL REFERENCES requests (id),
                   queue INTEGER REFERENCES review_queue (id),
                   action TEXT NOT NULL,
                   name TEXT NOT NULL,
                   path TEXT NOT NULL,
                   sha256 TEXT NOT NULL,
                   sensitivity TEXT NOT NULL,
                   author TEXT NOT NULL,
                   extract TEXT NOT NULL,
                   status TEXT NOT NULL CHECK (status IN ('gated', 'fail', 'review', 'pass')),
                   checks TEXT NOT NULL,
                   active INTEGER NOT NULL DEFAULT 1,
                   added_at TEXT NOT NULL
               )""",
            "CREATE INDEX request_outputs_by_request ON request_outputs (request, active)",
            """CREATE TABLE votes (
                   id INTEGER PRIMARY KEY,
                   request INTEGER NOT NULL REFERENCES requests (id),
                   output INTEGER NOT NULL REFERENCES request_outputs (id),
                   member TEXT NOT NULL,
                   vote TEXT NOT NULL CHECK (vote IN ('approve', 'reject', 'return')),
                   at TEXT NOT NULL,
                   UNIQUE (output, member)
               )""",
            """CREATE TABLE comments (
                   id INTEGER PRIMARY KEY,
                   request INTEGER NOT NULL REFERENCES requests (id),
                   output INTEGER REFERENCES request_outputs (id),
                   author TEXT NOT NULL,
                   visibility TEXT NOT NULL CHECK (visibility IN ('committee', 'researcher')),
                   body TEXT NOT NULL,
                   at TEXT NOT NULL
               )""",
        ),
    ),
    Migration(
        6,
        "web app sessions and failed sign-ins",
        (
            # Only the SHA-256 of a session's token is stored: a copy of the catalog signs nobody in.
            """CREATE TABLE sessions (
                   token_sha256 TEXT PRIMARY KEY,
                   user TEXT NOT NULL REFERENCES users (name),
                   csrf TEXT NOT NULL,
                   created_at TEXT NOT NULL,
                   seen_at TEXT NOT NULL
               )""",
            "CREATE INDEX sessions_by_user ON sessions (user)",
            """CREATE TABLE signin_failures (
                   id INTEGER PRIMARY KEY,
                   user TEXT NOT NULL,
                   at TEXT NOT NULL
               )""",
            "CREATE INDEX signin_failures_by_user ON signin_failures (user, at)",
        ),
    ),
    Migration(
        7,
        "a steward's waiver of the sandbox for a workspace's real data",
        (
            """CREATE TABLE sandbox_waivers (
                   id INTEGER PRIMARY KEY,
                   granted_by TEXT NOT NULL,
                   granted_at TEXT NOT NULL,
                   reason TEXT NOT NULL,
                   revoked_at TEXT
               )""",
        ),
    ),
    Migration(
        8,
        "study owners named by the committee; a registered pipeline's content hash; sign-in failures by address; "
        "several roles per user",
        (
            """CREATE TABLE study_owners (
                   study TEXT NOT NULL,
                   owner TEXT NOT NULL REFERENCES users (name),
                   added_by TEXT NOT NULL,
                   added_at TEXT NOT NULL,
                   PRIMARY KEY (study, owner)
               )""",
            "ALTER TABLE pipelines ADD COLUMN sha256 TEXT",
            "ALTER TABLE signin_failures ADD COLUMN address TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX signin_failures_by_address ON signin_failures (address, at)",
            # A user may hold several roles (a small registry's steward who sits on the committee).
            """CREATE TABLE user_roles (
                   user TEXT NOT NULL REFERENCES users (name),
                   role TEXT NOT NULL CHECK (role IN ('researcher', 'committee', 'steward')),
                   added_by TEXT NOT NULL,
                   added_at TEXT NOT NULL,
                   PRIMARY KEY (user, role)
               )""",
            "INSERT INTO user_roles (user, role, added_by, added_at) SELECT name, role, added_by, added_at FROM users",
        ),
    ),
    Migration(
        9,
        "when each user last looked at each request's unreleased outputs (one audit line per look, not per reload)",
        (
            """CREATE TABLE request_views (
                   user TEXT NOT NULL,
                   request INTEGER NOT NULL REFERENCES requests (id),
                   output TEXT NOT NULL,
                   at TEXT NOT NULL,
                   PRIMARY KEY (user, request, output)
               )""",
        ),
    ),
    Migration(
        10,
        "command-line sign-in sessions beside the web app's; a user's second factor (TOTP); a steward's opt-in to "
        "demo mode on real data",
        (
            "ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'web' CHECK (kind IN ('web', 'cli'))",
            "ALTER TABLE users ADD COLUMN totp_secret TEXT",
            """CREATE TABLE demo_optins (
                   id INTEGER PRIMARY KEY,
                   granted_by TEXT NOT NULL,
                   granted_at TEXT NOT NULL,
                   reason TEXT NOT NULL,
                   revoked_at TEXT
               )""",
        ),
    ),
    Migration(
        11,
        "whether a session's sign-in gave a one-time code; the time step of each user's last code (good once)",
        (
            "ALTER TABLE sessions ADD COLUMN second_factor INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE users ADD COLUMN totp_step INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        12,
        "the audit log's length in bytes at its anchored entry: lines a crash left past it are found without "
        "reading the log",
        ("ALTER TABLE audit_head ADD COLUMN bytes INTEGER",),
    ),
    Migration(
        13,
        "each study's pseudonym secret (32 random bytes, made by its first run; never derived from the key)",
        (
            """CREATE TABLE study_secrets (
                   study TEXT PRIMARY KEY,
                   secret BLOB NOT NULL CHECK (length(secret) = 32),
                   created_at TEXT NOT NULL
               )""",
        ),
    ),
    Migration(
        14,
        "data permits (purpose, people, data, tier, period) and their users; the opt-out register (keyed hashes of "
        "national IDs, never in clear); each study that had a budget gets one granted permit of the real tier over "
        "every table, its owners its users, for three years from its first grant, and its pseudonym secret",
        (
            # A permit's life: applied -> granted | refused; granted -> revoked. It ends on ``until`` (expired is
            # read from the date, never stored). ``data``: "*" (every table) or JSON {"table": null (every column)
            # or [columns]}.
            """CREATE TABLE permits (
                   id INTEGER PRIMARY KEY,
                   study TEXT NOT NULL,
                   state TEXT NOT NULL CHECK (state IN ('applied', 'granted', 'refused', 'revoked')),
                   holder TEXT NOT NULL,
                   purpose TEXT NOT NULL,
                   category TEXT NOT NULL,
                   tier TEXT NOT NULL CHECK (tier IN ('twin', 'dp', 'real')),
                   data TEXT NOT NULL,
                   versions TEXT NOT NULL DEFAULT 'new',
                   rho_asked TEXT,
                   until TEXT NOT NULL,
                   legal_basis TEXT NOT NULL DEFAULT '',
                   optout_exception TEXT NOT NULL DEFAULT '',
                   continuation_of INTEGER REFERENCES permits (id),
                   applied_by TEXT NOT NULL,
                   applied_at TEXT NOT NULL,
                   decided_by TEXT,
                   decided_at TEXT,
                   decision_note TEXT NOT NULL DEFAULT '',
                   revoked_by TEXT,
                   revoked_at TEXT,
                   ended_handled_at TEXT,
                   publication TEXT NOT NULL DEFAULT 'not yet'
               )""",
            "CREATE INDEX permits_by_study ON permits (study, state)",
            """CREATE TABLE permit_users (
                   permit INTEGER NOT NULL REFERENCES permits (id),
                   user TEXT NOT NULL,
                   PRIMARY KEY (permit, user)
               )""",
            """CREATE TABLE optouts (
                   id INTEGER PRIMARY KEY,
                   person TEXT NOT NULL UNIQUE,
                   effective TEXT NOT NULL,
                   recorded_by TEXT NOT NULL,
                   recorded_at TEXT NOT NULL
               )""",
            # The first grant's member and time: SQLite gives a bare column of the row MIN() picked.
            """INSERT INTO permits (study, state, holder, purpose, category, tier, data, until, legal_basis,
                                    applied_by, applied_at, decided_by, decided_at, decision_note)
               SELECT g.study, 'granted', '(not recorded before permits)', '(not recorded before permits)',
                      'scientific-research', 'real', '*', date(MIN(g.granted_at), '+3 years'),
                      '(a budget grant made before permits)', g.granted_by, g.granted_at,
                      g.granted_by, g.granted_at, 'migrated from the study''s budget grants'
               FROM dp_grants g WHERE g.tier = 'real' AND g.study NOT LIKE '@%' GROUP BY g.study""",
            # Its users: the study's owners; a study granted before owners were named (no owner rows), whoever
            # registered its pipeline.
            """INSERT INTO permit_users (permit, user)
               SELECT p.id, o.owner FROM permits p JOIN study_owners o ON o.study = p.study""",
            """INSERT INTO permit_users (permit, user)
               SELECT p.id, r.registered_by FROM permits p JOIN pipelines r ON r.study = p.study
               WHERE NOT EXISTS (SELECT 1 FROM study_owners o WHERE o.study = p.study)""",
            "DROP TABLE study_owners",  # a study's owners are its permits' users from now on
            # A study's pseudonym secret belongs to its permit now (a new permit, new pseudonyms): the secret a
            # study's runs made so far is its migrated permit's.
            """UPDATE study_secrets SET study = study || '#permit-' ||
                   (SELECT MIN(p.id) FROM permits p WHERE p.study = study_secrets.study)
               WHERE EXISTS (SELECT 1 FROM permits p WHERE p.study = study_secrets.study)""",
        ),
    ),
    Migration(
        15,
        "the registry's DP-twin budget comes with a permit too: a registry that has one gets a granted permit for "
        "the registry's DP twin (real tier, every table, three years from its first grant), naming as users the "
        "active stewards who granted none of it",
        (
            """INSERT INTO permits (study, state, holder, purpose, category, tier, data, until, legal_basis,
                                    applied_by, applied_at, decided_by, decided_at, decision_note)
               SELECT g.study, 'granted', 'the registry',
                      'building the registry''s differentially private synthetic twin', 'scientific-research',
                      'real', '*', date(MIN(g.granted_at), '+3 years'), '(a budget grant made before permits)',
                      g.granted_by, g.granted_at, g.granted_by, g.granted_at,
                      'migrated from the DP-twin budget''s grants'
               FROM dp_grants g WHERE g.tier = 'real' AND g.study = '@twin'
                    AND NOT EXISTS (SELECT 1 FROM permits p WHERE p.study = '@twin') GROUP BY g.study""",
            """INSERT INTO permit_users (permit, user)
               SELECT p.id, r.user FROM permits p JOIN user_roles r ON r.role = 'steward'
                      JOIN users u ON u.name = r.user AND u.active = 1
               WHERE p.study = '@twin' AND NOT EXISTS (SELECT 1 FROM permit_users x WHERE x.permit = p.id)
                     AND NOT EXISTS (SELECT 1 FROM dp_grants g WHERE g.study = '@twin' AND g.granted_by = r.user)""",
        ),
    ),
)


MAX_ID = 2**63 - 1  # SQLite's largest INTEGER: no row has a larger id


def row_id(value: int) -> bool:
    """Whether ``value`` can be a row's id (a number typed by a user may be anything)."""
    return 1 <= value <= MAX_ID


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def connect(path: Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> sqlite3.Connection:
    """Open the catalog (creating it if absent) and bring its schema up to date."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    try:
        migrate(conn, migrations=migrations, path=path)
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection, *, migrations: Sequence[Migration] = MIGRATIONS, path: Path | None = None
) -> list[int]:
    """Apply every migration newer than the catalog; return the versions applied."""
    _check_sequence(migrations)
    current = schema_version(conn)
    latest = latest_version(migrations)
    if current > latest:
        where = f"{path}: " if path else ""
        raise BadInput(
            f"{where}catalog schema is version {current}, newer than this research-kit knows "
            f"({latest}); upgrade research-kit"
        )
    applied = []
    for migration in migrations:
        if migration.version <= current:
            continue
        with transaction(conn):
            # Re-read inside the write lock: another process may have migrated meanwhile.
            if schema_version(conn) >= migration.version:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
        applied.append(migration.version)
    return applied


def _check_sequence(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3, ... without gaps: {versions}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction taken at once (BEGIN IMMEDIATE): one writer at a time.

    What :func:`before_commit` registered runs just before COMMIT (the audit log's lines are written then,
    so a change that rolls back leaves none); a failure there rolls the change back.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        for hook in _BEFORE_COMMIT.pop(id(conn), []):
            hook()
    except BaseException:
        _BEFORE_COMMIT.pop(id(conn), None)
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_BEFORE_COMMIT: dict[int, list[Callable[[], None]]] = {}


def commit_hooks(conn: sqlite3.Connection) -> list[Callable[[], None]]:
    """What will run before the open transaction of ``conn`` commits (empty outside one)."""
    return _BEFORE_COMMIT.get(id(conn), [])


def before_commit(conn: sqlite3.Connection, hook: Callable[[], None]) -> None:
    """Run ``hook`` inside the open transaction of ``conn``, just before it commits (in the order given)."""
    if not conn.in_transaction:
        raise RuntimeError("before_commit needs an open transaction")
    _BEFORE_COMMIT.setdefault(id(conn), []).append(hook)
