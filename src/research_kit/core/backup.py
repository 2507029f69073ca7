"""Snapshots of a workspace: what ``research-kit backup`` writes and ``research-kit restore`` checks and restores.

A snapshot is a folder::

    manifest.json                 what is in it: each file's SHA-256 and size, research-kit's version, the
                                  catalog's schema version, the audit head (seq, hash), when it was made
    catalog.sqlite                the catalog, copied with SQLite's backup API (with each study's pseudonym
                                  secret, so that a restored workspace shows every study the same pseudonyms)
    audit.jsonl                   the audit log: exactly the entries the catalog anchors
    research-kit.toml             the policy
    extracts/<id>/manifest.json   each registered extract's manifest and reconciliation;
    extracts/<id>/...             its data too when copied (``copy_data``), else recorded by reference: the
                                  extract's folder and each data file's SHA-256

The catalog and the audit log are copied while the catalog's write lock is held (``BEGIN IMMEDIATE``): an
audit line is written only under that lock, so the log copied is exactly the one the copied catalog anchors.
Extracts are immutable once registered: their files are copied (or checksummed) after the lock is released.

Never in a snapshot: the pseudonymisation key (it lives outside the workspace; the steward backs it up apart),
raw exports and the quarantine (identifiable), and what can be made again or is kept elsewhere (study results,
synthetic twins, reports, release bundles, caches, scratch). A snapshot is written to a hidden folder beside
its destination and renamed into place whole; a restore likewise, after every check has passed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from research_kit import __version__
from research_kit.core import audit, catalog
from research_kit.core.catalog import transaction
from research_kit.core.checksums import BLOCK
from research_kit.core.config import POLICY_FILE
from research_kit.core.errors import BadInput, IntegrityError, MissingData, PolicyRefusal
from research_kit.core.extracts import MANIFEST as EXTRACT_MANIFEST
from research_kit.core.extracts import RECONCILIATION, STAGED, finish_registrations
from research_kit.core.workspace import Workspace

FORMAT = "research-kit-snapshot/1"
MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
AUDIT = "audit.jsonl"
EXTRACTS = "extracts"
RECORDS = (EXTRACT_MANIFEST, RECONCILIATION)  # an extract's files always in a snapshot; the rest is its data
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")

# What is being copied or checksummed, bytes done, bytes in all (for a progress bar).
Progress = Callable[[str, int, int], None]
# Called with the restored catalog once the snapshot's records are checked, before any data is copied:
# refuses (raises) when the restoring person may not.
Authorise = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Snapshot:
    path: Path
    manifest: dict[str, Any]
    checksum: str  # the SHA-256 of manifest.json: recorded in the source's audit log, shown by restore

    @property
    def audit_head(self) -> tuple[int, str]:
        head = self.manifest["audit_head"]
        return int(head["seq"]), str(head["hash"])

    @property
    def extracts(self) -> dict[str, str]:
        """Each extract and how its data is kept: "copy" or "reference"."""
        return {name: str(e["data"]) for name, e in sorted(self.manifest["extracts"].items())}

    @property
    def files(self) -> int:
        return len(self.manifest["files"])

    @property
    def bytes(self) -> int:
        return sum(int(f["bytes"]) for f in self.manifest["files"].values())


@dataclass(frozen=True)
class Restored:
    root: Path
    snapshot: Snapshot
    actor: str
    sessions_ended: int
    relocated: int  # catalog paths moved from the snapshot's workspace folder to the new one


# ---------------------------------------------------------------- files


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _checksum(manifest: dict[str, Any]) -> str:
    """The manifest's checksum over everything else in it: a manifest changed by accident is found."""
    return hashlib.sha256(_canonical({k: v for k, v in manifest.items() if k != "checksum"}).encode()).hexdigest()


def _copy(src: Path, dst: Path | None, advance: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Copy ``src`` to a new file ``dst`` (or only read it when None), durably; its SHA-256 and size."""
    digest, size = hashlib.sha256(), 0
    out = None if dst is None else os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with src.open("rb") as handle:
            while block := handle.read(BLOCK):
                digest.update(block)
                size += len(block)
                if out is not None:
                    view = memoryview(block)
                    while view:
                        view = view[os.write(out, view) :]
                if advance is not None:
                    advance(len(block))
        if out is not None:
            os.fsync(out)
    finally:
        if out is not None:
            os.close(out)
    return digest.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())


@contextmanager
def _staging(final: Path, suffix: str) -> Iterator[Path]:
    """A hidden folder (mode 0700) beside ``final``, removed unless the block renamed it into place."""
    final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent))
    try:
        yield temp
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _data_files(folder: Path) -> list[Path]:
    """An extract's data files (all but its manifest and reconciliation), by name."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in RECORDS)


def _table_sums(extract_manifest: dict[str, Any]) -> dict[str, str]:
    """The data files' SHA-256 an extract's own manifest states (``patients.parquet`` -> sha256)."""
    tables = extract_manifest.get("tables")
    if not isinstance(tables, dict):
        return {}
    return {f"{name}.parquet": str(t.get("sha256")) for name, t in tables.items() if isinstance(t, dict)}


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _enclosing_workspace(path: Path) -> Path | None:
    """The workspace ``path`` is, or lies in (a folder holding a policy file and a catalog)."""
    for folder in (path, *path.parents):
        if (folder / POLICY_FILE).is_file() and (folder / CATALOG).is_file():
            return folder
    return None


# ---------------------------------------------------------------- backup


def backup(ws: Workspace, out: Path, *, copy_data: bool = False, progress: Progress | None = None) -> Snapshot:
    """Write a snapshot of ``ws`` to the new folder ``out``: whole, or (on any failure) not at all."""
    root = ws.root.resolve()
    out = out.expanduser().absolute()
    if out.exists() or out.is_symlink():
        raise BadInput(f"{out}: exists already; a snapshot is written to a new folder")
    where = out.resolve()
    if _inside(where, root) or _inside(root, where):
        raise BadInput(f"{out}: inside the workspace {root}; keep snapshots outside it (another disk, ideally)")
    with _staging(out, ".partial") as temp:
        manifest = _write_snapshot(ws, temp, copy_data=copy_data, progress=progress)
        raw = (temp / MANIFEST).read_bytes()
        if out.exists() or out.is_symlink():  # made meanwhile
            raise BadInput(f"{out}: exists already; a snapshot is written to a new folder")
        os.rename(temp, out)
        _fsync_dir(out.parent)
    return Snapshot(out, manifest, hashlib.sha256(raw).hexdigest())


def _write_snapshot(ws: Workspace, temp: Path, *, copy_data: bool, progress: Progress | None) -> dict[str, Any]:
    files: dict[str, dict[str, Any]] = {}

    def add(rel: str, found: tuple[str, int]) -> None:
        files[rel] = {"sha256": found[0], "bytes": found[1]}

    # The write lock: no change commits, and no audit line is written, until the catalog and the log are copied.
    with ws.catalog() as lock, transaction(lock):
        seq, head_hash = audit.head(lock)
        row = lock.execute("SELECT * FROM audit_head WHERE id = 1").fetchone()
        anchored_bytes = None if row is None else dict(row).get("bytes")  # the log's length at the anchor
        schema = catalog.schema_version(lock)
        rows = [dict(r) for r in lock.execute("SELECT * FROM extracts ORDER BY id")]
        # A second connection reads (in WAL mode a reader goes on beside the lock's holder) and copies.
        with (
            closing(sqlite3.connect(ws.catalog_path, timeout=30.0)) as source,
            closing(sqlite3.connect(temp / CATALOG)) as target,
        ):
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        add(AUDIT, _copy_audit(ws.audit_path, temp / AUDIT, seq, anchored_bytes))
        add(POLICY_FILE, _copy(ws.policy_path, temp / POLICY_FILE))
    with closing(sqlite3.connect(temp / CATALOG, isolation_level=None)) as conn:
        verdict = audit.verify(conn, temp / AUDIT)
    if not verdict.ok:
        raise IntegrityError(f"{ws.audit_path}: {verdict.problem}; no snapshot was made")
    with open(temp / CATALOG, "rb") as fh:
        os.fsync(fh.fileno())
    add(CATALOG, _copy(temp / CATALOG, None))

    missing = [r["id"] for r in rows if not (ws.extracts_dir / r["id"]).is_dir()]
    if missing:
        finish_registrations(ws, *missing)  # an ingest stopped after registering: its folder is moved into place
    plan: list[tuple[dict[str, Any], Path, list[Path]]] = []
    for r in rows:
        folder = ws.extracts_dir / r["id"]
        for name in RECORDS:
            if not (folder / name).is_file():
                raise IntegrityError(
                    f"{folder / name}: missing (extract {r['id']} is registered); no snapshot was made"
                )
        plan.append((r, folder, _data_files(folder)))
    total = sum(p.stat().st_size for _, _, data in plan for p in data)
    done = 0
    what = "copying extract data" if copy_data else "checksumming extract data"

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(what, done, total)

    extracts: dict[str, Any] = {}
    (temp / EXTRACTS).mkdir(mode=0o700)
    for r, folder, data in plan:
        dest = temp / EXTRACTS / r["id"]
        dest.mkdir(mode=0o700, parents=True)
        for name in RECORDS:
            add(f"{EXTRACTS}/{r['id']}/{name}", _copy(folder / name, dest / name))
        stated = json.loads((dest / EXTRACT_MANIFEST).read_text(encoding="utf-8"))
        if stated.get("content_hash") != r["content_hash"]:
            raise IntegrityError(
                f"{folder / EXTRACT_MANIFEST}: its content hash is not the catalog's for extract {r['id']}; "
                "no snapshot was made"
            )
        expected = _table_sums(json.loads(r["manifest"]))
        sums: dict[str, dict[str, Any]] = {}
        for path in data:
            rel = path.relative_to(folder).as_posix()
            if copy_data:
                (dest / rel).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            sha, size = _copy(path, dest / rel if copy_data else None, advance)
            if rel in expected and expected[rel] != sha:
                raise IntegrityError(f"{path}: does not match its extract's manifest (changed); no snapshot was made")
            sums[rel] = {"sha256": sha, "bytes": size}
            if copy_data:
                files[f"{EXTRACTS}/{r['id']}/{rel}"] = sums[rel]
        absent = sorted(set(expected) - set(sums))
        if absent:
            raise IntegrityError(f"{folder / absent[0]}: missing from extract {r['id']}; no snapshot was made")
        entry: dict[str, Any] = {"content_hash": r["content_hash"], "data": "copy" if copy_data else "reference"}
        if not copy_data:
            entry["path"] = str(folder.resolve())
        extracts[r["id"]] = entry | {"files": sums}

    manifest: dict[str, Any] = {
        "format": FORMAT,
        "research_kit": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "schema_version": schema,
        "audit_head": {"seq": seq, "hash": head_hash},
        "workspace": str(ws.root.resolve()),
        "data": "copy" if copy_data else "reference",
        "key_fingerprints": sorted({r["key_fingerprint"] for r in rows}),
        "extracts": extracts,
        "files": files,
    }
    manifest["checksum"] = _checksum(manifest)
    _write_json(temp / MANIFEST, manifest)
    for folder in sorted({p.parent for p in temp.rglob("*") if p.is_file()}, key=lambda p: len(p.parts)):
        _fsync_dir(folder)
    return manifest


def _copy_audit(src: Path, dst: Path, seq: int, anchored_bytes: int | None) -> tuple[str, int]:
    """The log up to its anchored entry (lines a crash left past it are not the log's)."""
    raw = src.read_bytes() if src.exists() else b""
    kept = raw[:anchored_bytes] if anchored_bytes is not None else b"".join(raw.splitlines(keepends=True)[:seq])
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(kept)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return hashlib.sha256(kept).hexdigest(), len(kept)


# ---------------------------------------------------------------- reading a snapshot


def read_snapshot(path: Path) -> Snapshot:
    """The snapshot at ``path``, its manifest checked for shape and against its own checksum."""
    if not path.is_dir():
        raise MissingData(f"{path}: no snapshot here")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise MissingData(f"{path}: no snapshot here (no {MANIFEST})")
    raw = mpath.read_bytes()
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError(f"{mpath}: not readable JSON (changed or corrupted)") from None
    if not isinstance(manifest, dict) or "format" not in manifest:
        raise IntegrityError(f"{mpath}: not a research-kit snapshot's manifest")
    if manifest["format"] != FORMAT:
        raise BadInput(f"{mpath}: format {manifest['format']!r}; this research-kit restores {FORMAT!r}")
    if manifest.get("checksum") != _checksum(manifest):
        raise IntegrityError(f"{mpath}: does not match its own checksum (changed or corrupted)")
    try:
        _check_shape(manifest)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{mpath}: malformed ({exc})") from None
    return Snapshot(path, manifest, hashlib.sha256(raw).hexdigest())


def _check_shape(m: dict[str, Any]) -> None:
    """Raise (KeyError, TypeError, ValueError) unless every field has its type and every path is a snapshot's."""
    int(m["schema_version"])
    int(m["audit_head"]["seq"])
    if not isinstance(m["created_at"], str) or not isinstance(m["research_kit"], str):
        raise ValueError("created_at, research_kit")
    if not _SHA.match(m["audit_head"]["hash"]):
        raise ValueError("audit head hash")
    if m["data"] not in ("copy", "reference"):
        raise ValueError("data")
    for rel, f in m["files"].items():
        parts = PurePosixPath(rel).parts
        ok = rel in (CATALOG, AUDIT, POLICY_FILE) or (
            len(parts) >= 3 and parts[0] == EXTRACTS and _ID.match(parts[1]) is not None and ".." not in parts
        )
        if not ok or rel.startswith("/") or not _SHA.match(f["sha256"]) or int(f["bytes"]) < 0:
            raise ValueError(f"file {rel!r}")
    for rel in (CATALOG, AUDIT, POLICY_FILE):
        if rel not in m["files"]:
            raise ValueError(f"no {rel}")
    for name, e in m["extracts"].items():
        if not _ID.match(name) or e["data"] not in ("copy", "reference") or not isinstance(e["content_hash"], str):
            raise ValueError(f"extract {name!r}")
        if e["data"] == "reference" and not Path(e["path"]).is_absolute():
            raise ValueError(f"extract {name!r}: path")
        for rel, f in e["files"].items():
            bad = ".." in PurePosixPath(rel).parts or rel.startswith("/") or rel in RECORDS
            if bad or not _SHA.match(f["sha256"]):
                raise ValueError(f"extract {name!r}: file {rel!r}")
            int(f["bytes"])
            if e["data"] == "copy" and m["files"].get(f"{EXTRACTS}/{name}/{rel}") != f:
                raise ValueError(f"extract {name!r}: file {rel!r} is not among the snapshot's files")


# ---------------------------------------------------------------- restore


def restore(
    snapshot: Path,
    target: Path,
    *,
    actor: str,
    authorise: Authorise | None = None,
    progress: Progress | None = None,
) -> Restored:
    """Check ``snapshot`` and restore it as a workspace at ``target`` (new or empty), acting as ``actor``.

    Every file's SHA-256, the audit chain against the snapshot catalog's anchor and, for extracts kept by
    reference, the referenced data are checked; the first failure is a one-line :class:`IntegrityError` naming
    the file, and nothing is left at ``target``. The restored workspace's sign-ins all end; its log records
    ``workspace.restored``.
    """
    snap = read_snapshot(snapshot)
    final = target.expanduser().absolute()
    _check_target(final, snapshot)
    latest = catalog.latest_version()
    if int(snap.manifest["schema_version"]) > latest:
        raise BadInput(
            f"{snapshot}: its catalog is schema version {snap.manifest['schema_version']}, newer than this "
            f"research-kit knows ({latest}); upgrade research-kit"
        )
    _check_listing(snap)
    with _staging(final, ".restoring") as temp:
        ws = Workspace(temp)
        for sub in (ws.raw_dir, ws.extracts_dir, ws.quarantine_dir, ws.scratch_dir):
            sub.mkdir(mode=0o700)
        for rel in (POLICY_FILE, CATALOG, AUDIT):
            _restore_file(snap, rel, temp / rel)
        _check_records(snap, temp)
        with ws.catalog() as conn:  # migrated forward, if the snapshot is older than this research-kit
            if authorise is not None:
                authorise(conn)
            rows = [dict(r) for r in conn.execute("SELECT id, content_hash FROM extracts ORDER BY id")]
        _restore_extracts(snap, ws, rows, progress)
        source = str(snap.manifest.get("workspace", ""))
        with ws.catalog() as conn, transaction(conn):
            ended = conn.execute("DELETE FROM sessions").rowcount
            moved_to = str(final.resolve())
            relocated = _relocate(conn, source, moved_to) if source and source != moved_to else 0
            seq, head_hash = snap.audit_head
            audit.append(
                conn,
                ws.audit_path,
                "workspace.restored",
                {
                    "snapshot_sha256": snap.checksum,
                    "snapshot_created_at": snap.manifest["created_at"],
                    "snapshot_research_kit": snap.manifest["research_kit"],
                    "source_audit_head": {"seq": seq, "hash": head_hash},
                    "extracts": snap.extracts,
                    "sessions_ended": ended,
                    "paths_relocated": relocated,
                },
                actor=actor,
            )
        if final.exists() and any(final.iterdir()):  # filled meanwhile
            raise BadInput(f"{final}: not empty; restore into a new or empty folder")
        os.rename(temp, final)  # over an empty folder, or a new one
        _fsync_dir(final.parent)
    return Restored(final, snap, actor, ended, relocated)


def _check_target(final: Path, snapshot: Path) -> None:
    resolved = final.resolve()
    workspace = _enclosing_workspace(resolved)
    if workspace is not None:
        where = "is" if workspace == resolved else f"lies in the workspace {workspace}, which is"
        raise PolicyRefusal(
            f"{final}: {where} a live workspace; restore never writes over or into one: "
            "restore into a new or empty folder (--to FOLDER)"
        )
    if _inside(resolved, snapshot.resolve()) or _inside(snapshot.resolve(), resolved):
        raise BadInput(f"{final}: holds or lies in the snapshot {snapshot}; restore into another folder")
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise BadInput(f"{final}: exists and is not a folder")
    if final.is_dir() and any(final.iterdir()):
        raise BadInput(f"{final}: not empty; restore into a new or empty folder")


def _check_listing(snap: Snapshot) -> None:
    """Every file the manifest lists is in the snapshot, and nothing else is."""
    listed = set(snap.manifest["files"])
    for path in sorted(snap.path.rglob("*")):
        rel = path.relative_to(snap.path).as_posix()
        if path.is_symlink() or (not path.is_dir() and not path.is_file()):
            raise IntegrityError(f"{path}: not a plain file; a snapshot holds only files and folders")
        if path.is_file() and rel != MANIFEST and rel not in listed:
            raise IntegrityError(f"{path}: not in the snapshot's manifest (added after the backup)")
    for rel in sorted(listed):
        if not (snap.path / rel).is_file():
            raise IntegrityError(f"{snap.path / rel}: missing from the snapshot (its manifest lists it)")


def _restore_file(snap: Snapshot, rel: str, dst: Path, advance: Callable[[int], None] | None = None) -> None:
    """Copy one file of the snapshot, checking it against the manifest as it is read."""
    expected = snap.manifest["files"][rel]
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    sha, size = _copy(snap.path / rel, dst, advance)
    if (sha, size) != (expected["sha256"], int(expected["bytes"])):
        raise IntegrityError(
            f"{snap.path / rel}: its SHA-256 does not match the snapshot's manifest (changed or corrupted)"
        )


def _check_records(snap: Snapshot, temp: Path) -> None:
    """The restored catalog and log: the schema version, the chain against the anchor, the anchor the manifest's."""
    with closing(sqlite3.connect(temp / CATALOG, isolation_level=None)) as conn:
        try:
            version = catalog.schema_version(conn)
            head = audit.head(conn)
            verdict = audit.verify(conn, temp / AUDIT)
        except sqlite3.DatabaseError as exc:
            raise IntegrityError(f"{snap.path / CATALOG}: not a readable catalog ({exc})") from None
    if version != int(snap.manifest["schema_version"]):
        raise IntegrityError(
            f"{snap.path / CATALOG}: schema version {version}, where the manifest says "
            f"{snap.manifest['schema_version']}"
        )
    if not verdict.ok:
        raise IntegrityError(f"{snap.path / AUDIT}: {verdict.problem}")
    if head != snap.audit_head:
        raise IntegrityError(
            f"{snap.path / CATALOG}: its audit anchor (entry {head[0]}) is not the manifest's "
            f"(entry {snap.audit_head[0]})"
        )


def _restore_extracts(snap: Snapshot, ws: Workspace, rows: list[dict[str, Any]], progress: Progress | None) -> None:
    recorded = snap.manifest["extracts"]
    registered = {r["id"]: r["content_hash"] for r in rows}
    for name in sorted(set(registered) ^ set(recorded)):
        where = "registered in the catalog but not in the manifest" if name in registered else "not in the catalog"
        raise IntegrityError(f"{snap.path / MANIFEST}: extract {name} is {where}")
    total = sum(int(f["bytes"]) for e in recorded.values() for f in e["files"].values())
    done = 0
    what = "restoring extract data"

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(what, done, total)

    for name in sorted(recorded):
        entry, dest = recorded[name], ws.extracts_dir / name
        staged = ws.extracts_dir / f"{STAGED}{name}"
        for record in RECORDS:
            _restore_file(snap, f"{EXTRACTS}/{name}/{record}", staged / record)
        stated = json.loads((staged / EXTRACT_MANIFEST).read_text(encoding="utf-8"))
        if stated.get("content_hash") != registered[name] or entry["content_hash"] != registered[name]:
            raise IntegrityError(
                f"{snap.path / EXTRACTS / name / EXTRACT_MANIFEST}: its content hash is not the catalog's"
            )
        for rel, expected in sorted(entry["files"].items()):
            if entry["data"] == "copy":
                _restore_file(snap, f"{EXTRACTS}/{name}/{rel}", staged / rel, advance)
                continue
            src = Path(entry["path"]) / rel
            if not src.is_file():
                raise IntegrityError(f"{src}: missing (extract {name}'s data, kept by reference)")
            (staged / rel).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            sha, size = _copy(src, staged / rel, advance)
            if (sha, size) != (expected["sha256"], int(expected["bytes"])):
                raise IntegrityError(
                    f"{src}: its SHA-256 does not match the snapshot's record (extract {name}'s data, changed)"
                )
        os.rename(staged, dest)


def _relocate(conn: sqlite3.Connection, old: str, new: str) -> int:
    """Move the catalog's paths inside the snapshot's workspace folder (a study result's folder, an executed
    notebook, an output under review, a release bundle, a raw export) to the restored one's: every text value
    of every table that starts with the old folder. How many values moved."""
    prefix = old.rstrip("/") + "/"
    moved = 0
    tables = [
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
    ]
    for table in tables:
        for column in [c[1] for c in conn.execute(f'PRAGMA table_info("{table}")') if str(c[2]).upper() == "TEXT"]:
            moved += conn.execute(
                f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) WHERE substr("{column}", 1, ?) = ?',
                (new.rstrip("/"), len(prefix), len(prefix), prefix),
            ).rowcount
    return moved
