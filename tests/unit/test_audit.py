from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from research_kit.core import audit, catalog
from research_kit.core.workspace import Workspace


@pytest.fixture
def logged(workspace: Workspace) -> Workspace:
    """A workspace whose log holds 6 entries (init + 5)."""
    for i in range(5):
        workspace.audit("test.event", number=i)
    return workspace


def lines(ws: Workspace) -> list[str]:
    return ws.audit_path.read_text(encoding="utf-8").splitlines(keepends=True)


def write(ws: Workspace, content: list[str]) -> None:
    ws.audit_path.write_text("".join(content), encoding="utf-8")


def verdict(ws: Workspace) -> audit.Verdict:
    with ws.catalog() as conn:
        return audit.verify(conn, ws.audit_path)


def assert_broken(ws: Workspace, first_bad: int, *words: str) -> None:
    v = verdict(ws)
    assert not v.ok
    assert v.first_bad_seq == first_bad, v.problem
    for word in words:
        assert word in str(v.problem)


def test_an_untouched_log_verifies(logged: Workspace) -> None:
    v = verdict(logged)
    assert v.ok
    assert v.entries == 6


def test_entries_record_actor_action_details_and_chain(logged: Workspace) -> None:
    entries = audit.read_entries(logged.audit_path)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0]["prev"] == audit.GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert entries[3]["actor"] == "test-steward"
    assert entries[3]["action"] == "test.event"
    assert entries[3]["details"] == {"number": 2}


def test_an_edited_entry_is_named(logged: Workspace) -> None:
    content = lines(logged)
    entry = json.loads(content[2])
    entry["details"]["number"] = 99
    content[2] = json.dumps(entry) + "\n"
    write(logged, content)
    assert_broken(logged, 3, "entry 3", "edited")


def test_an_entry_rewritten_with_a_fresh_hash_is_named(logged: Workspace) -> None:
    content = lines(logged)
    entry = json.loads(content[2])
    entry["details"]["number"] = 99
    body = {k: entry[k] for k in ("seq", "ts", "actor", "action", "details", "prev")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    entry["hash"] = hashlib.sha256(canonical.encode()).hexdigest()
    content[2] = json.dumps(entry) + "\n"
    write(logged, content)
    assert_broken(logged, 3, "rewritten")


def test_a_deleted_entry_is_named(logged: Workspace) -> None:
    content = lines(logged)
    del content[3]
    write(logged, content)
    assert_broken(logged, 4, "entry 4 is missing")


def test_entries_cut_from_the_end_are_detected(logged: Workspace) -> None:
    write(logged, lines(logged)[:4])
    assert_broken(logged, 5, "missing from the end")


def test_an_inserted_entry_is_named(logged: Workspace) -> None:
    content = lines(logged)
    content.insert(2, content[1])  # a copy of entry 2 slipped in after it
    write(logged, content)
    assert_broken(logged, 2, "inserted or moved")


def test_reordered_entries_are_named(logged: Workspace) -> None:
    content = lines(logged)
    content[2], content[3] = content[3], content[2]
    write(logged, content)
    assert_broken(logged, 3)


def test_an_entry_appended_by_hand_is_detected_then_cut_and_the_cut_recorded(logged: Workspace) -> None:
    last = json.loads(lines(logged)[-1])
    forged = {**last, "seq": last["seq"] + 1, "prev": last["hash"], "action": "forged"}
    write(logged, [*lines(logged), json.dumps(forged) + "\n"])
    conn = catalog.connect(logged.catalog_path)  # read as it is, without opening the workspace
    try:
        v = audit.verify(conn, logged.audit_path)
    finally:
        conn.close()
    assert not v.ok
    assert v.first_bad_seq == 7
    # Opening the workspace cuts what is past the anchor (a crash's leftover looks the same) and says so.
    assert verdict(logged).ok
    entries = audit.read_entries(logged.audit_path)
    assert [e["action"] for e in entries[-1:]] == ["audit.recovered"]
    assert entries[-1]["seq"] == 7
    assert entries[-1]["details"]["cut"][0].startswith("entry 7 forged")


def test_a_log_whose_last_newline_was_lost_takes_the_next_entry_on_a_line_of_its_own(logged: Workspace) -> None:
    logged.audit_path.write_bytes(logged.audit_path.read_bytes().rstrip(b"\n"))
    logged.audit("test.after")
    assert verdict(logged).ok
    assert [e["action"] for e in audit.read_entries(logged.audit_path)][-2:] == ["test.event", "test.after"]


def test_a_garbled_line_is_named(logged: Workspace) -> None:
    content = lines(logged)
    content[1] = "not json at all\n"
    write(logged, content)
    v = verdict(logged)
    assert not v.ok
    assert "line 2" in str(v.problem)


def test_a_new_entry_after_truncation_does_not_hide_it(logged: Workspace) -> None:
    write(logged, lines(logged)[:3])
    logged.audit("test.after", number=1)  # chains to the anchor (entry 6), not to line 3
    assert not verdict(logged).ok


def test_concurrent_appenders_never_fork_the_chain(workspace: Workspace) -> None:
    code = (
        "import sys; from pathlib import Path; from research_kit.core.workspace import Workspace\n"
        "ws = Workspace(Path(sys.argv[1]))\n"
        "for i in range(15): ws.audit('test.race', worker=sys.argv[2], i=i)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(workspace.root), str(w)]) for w in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    v = verdict(workspace)
    assert v.ok, v.problem
    assert v.entries == 1 + 4 * 15
    seen = {(e["details"]["worker"], e["details"]["i"]) for e in audit.read_entries(workspace.audit_path)[1:]}
    assert len(seen) == 60


def test_details_are_stored_as_json(workspace: Workspace) -> None:
    entry = workspace.audit("test.types", path=Path("/x/y"), n=3)
    assert entry.details == {"path": "/x/y", "n": 3}
    assert verdict(workspace).ok


def test_entries_of_a_rolled_back_transaction_are_cut_and_the_cut_is_recorded(workspace: Workspace) -> None:
    from research_kit.core.catalog import transaction

    with workspace.catalog() as conn:
        try:
            with transaction(conn):
                audit.append(conn, workspace.audit_path, "test.doomed", {})
                raise RuntimeError("crash before commit")
        except RuntimeError:
            pass
    assert "test.doomed" not in workspace.audit_path.read_text(encoding="utf-8")  # written only at commit
    assert verdict(workspace).ok
    entry = workspace.audit("test.next")
    assert entry.seq == 2
    assert "_recovered_uncommitted" not in entry.details
    assert verdict(workspace).ok


def test_a_line_written_by_a_change_killed_before_it_committed_is_cut_when_the_workspace_opens(
    workspace: Workspace,
) -> None:
    workspace.audit("test.kept")
    with workspace.catalog() as conn:
        seq, prev = audit.head(conn)
    # What a SIGKILL between the line's write and the COMMIT leaves: a well-formed line past the anchor.
    line = {"seq": seq + 1, "ts": "2026-12-07T00:00:00+00:00", "actor": "x", "action": "test.lost", "details": {},
            "prev": prev}  # fmt: skip
    line["hash"] = audit._digest(seq + 1, line["ts"], "x", "test.lost", {}, prev)  # type: ignore[arg-type]
    with workspace.audit_path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")
    assert verdict(workspace).ok  # opened: repaired, and the repair is an entry of its own
    recovered = audit.read_entries(workspace.audit_path)[-1]
    assert recovered["action"] == "audit.recovered"
    assert recovered["actor"] == audit.SYSTEM


def test_an_edit_inside_the_log_is_never_repaired_away_with_a_real_entry(logged: Workspace) -> None:
    content = lines(logged)
    forged = json.dumps({"seq": 99, "action": "forged"}) + "\n"
    write(logged, [*content[:2], forged, *content[2:]])  # longer than the anchor, but not by a crash's line
    assert_broken(logged, 3)  # opening the workspace cut nothing: the edit is reported, not hidden
    assert lines(logged) == [*content[:2], forged, *content[2:]]
