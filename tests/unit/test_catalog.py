from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from research_kit.core import catalog
from research_kit.core.catalog import Migration
from research_kit.core.errors import BadInput

V1 = Migration(1, "one", ("CREATE TABLE a (x INTEGER)",))
V2 = Migration(2, "two", ("CREATE TABLE b (y INTEGER)", "INSERT INTO b VALUES (7)"))


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_catalog_is_in_wal_mode_at_the_latest_version(tmp_path: Path) -> None:
    conn = catalog.connect(tmp_path / "c.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert catalog.schema_version(conn) == catalog.latest_version()
    assert {"audit_head", "raw_exports"} <= tables(conn)


def test_migrations_run_forward_once(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    catalog.connect(path, migrations=(V1,)).close()
    conn = catalog.connect(path, migrations=(V1, V2))
    assert catalog.schema_version(conn) == 2
    assert tables(conn) == {"a", "b"}
    assert catalog.migrate(conn, migrations=(V1, V2)) == []  # nothing left to do
    assert conn.execute("SELECT count(*) FROM b").fetchone()[0] == 1


def test_a_failing_migration_leaves_the_previous_version_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    broken = Migration(2, "broken", ("CREATE TABLE b (y INTEGER)", "INSERT INTO nowhere VALUES (1)"))
    catalog.connect(path, migrations=(V1,)).close()
    with pytest.raises(sqlite3.OperationalError):
        catalog.connect(path, migrations=(V1, broken))
    conn = catalog.connect(path, migrations=(V1,))
    assert catalog.schema_version(conn) == 1
    assert tables(conn) == {"a"}  # table b was rolled back with the failed migration


def test_a_catalog_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    catalog.connect(path, migrations=(V1, V2)).close()
    with pytest.raises(BadInput, match="schema is version 2, newer than this research-kit knows"):
        catalog.connect(path, migrations=(V1,))


def test_migrations_must_be_numbered_without_gaps(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without gaps"):
        catalog.connect(tmp_path / "c.sqlite", migrations=(V1, Migration(3, "x", ())))
