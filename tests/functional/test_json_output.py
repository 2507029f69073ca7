"""Every list and show command read by a script: ``--json`` prints the documented shape (docs/interfaces.md,
"Machine-readable output") and nothing else on stdout, under the same permissions as its table; and a table
printed into a pipe keeps every cell whole.

One workspace serves the module: users signed in as they would be, a small extract, a budget with one spend
(a query from the shell), and a review request built through the Python API (no notebook runs), then submitted,
commented on and voted on through the actions the shell's commands call.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.conftest import PASSWORD, Project, grant, sign_in
from tests.functional.webapp import running_server

from research_kit.actions import review
from research_kit.core import audit
from research_kit.core.catalog import transaction
from research_kit.core.extracts import get_extract
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.ingest.pipeline import ingest
from research_kit.outputs import declare
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.review.intake import add_version, check_request
from research_kit.review.requests import now
from research_kit.simulator.export import SimulationSpec, simulate_export

# The library's actor and tier (the fixture sets them for a moment), and the test runner's width: not the shell's.
NOT_INHERITED = ("RESEARCH_KIT_USER", "RESEARCH_KIT_TIER", "RESEARCH_KIT_STUDY", "RESEARCH_KIT_EXTRACT", "COLUMNS")
STUDY = "a-study-whose-name-is-far-too-long-for-an-eighty-column-terminal"  # 64 characters, the most allowed
PATIENTS = 80
RHO, SPENT = 0.5, 0.01


@dataclass
class Shell:
    """The module's workspace and a shell on it: ``run`` is ``research-kit ARGS`` in a subprocess."""

    ws: Workspace
    env: dict[str, str]
    key_file: Path
    request: int
    project: Project

    def run(self, *args: str, columns: str | None = "200") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        env.update(self.env, **({"COLUMNS": columns} if columns is not None else {}))
        return subprocess.run(
            [sys.executable, "-m", "research_kit", *args], env=env, cwd=self.project.root, capture_output=True,
            text=True, stdin=subprocess.DEVNULL, timeout=120, check=False,
        )  # fmt: skip

    def both(self, *args: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        """``research-kit ARGS`` and ``research-kit ARGS --json``, run at the same time."""
        with ThreadPoolExecutor(2) as pool:
            text, machine = pool.map(lambda extra: self.run(*args, *extra), ((), ("--json",)))
        return text, machine

    def jsons(self, *commands: tuple[str, ...]) -> list[Any]:
        """:meth:`json` of each command, run at the same time."""
        with ThreadPoolExecutor(len(commands)) as pool:
            return list(pool.map(lambda args: self.json(*args), commands))

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, (done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        """``research-kit ARGS --json``: exit 0, and stdout is one JSON document and nothing else."""
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    base = tmp_path_factory.mktemp("json")
    env = {
        "RESEARCH_KIT_HOME": str(base / "ws"),
        "XDG_RUNTIME_DIR": str(base / "run"),
        "RESEARCH_KIT_KEY_FILE": str(base / "secrets" / "k.key"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        for name in ("RESEARCH_KIT_TIER", "RESEARCH_KIT_EXTRACT", "RESEARCH_KIT_STUDY"):
            mp.delenv(name, raising=False)
        ws, _ = init_workspace(base / "ws")
        sign_in(ws, stew="steward", dac="committee", rita="researcher")
        key_file, _ = new_key(base / "secrets" / "k.key")
        simulate_export(SimulationSpec(patients=PATIENTS, seed=5, format="parquet"), base / "raw")
        with audit.acting("stew"):
            ingest(ws, [base / "raw"], "e1", load_key(key_file))
        grant(ws, STUDY, RHO, owner="rita", note="ref 1")
        (base / "project").mkdir()
        shell = Shell(ws, env, key_file, 0, Project(base / "project", ws))
        with ThreadPoolExecutor(1) as pool:  # rita's query (a few seconds) while her request is made
            query = pool.submit(shell.ok, "--as", "rita", "query", "count", "patients", "--study", STUDY, "--rho",
                                str(SPENT))  # fmt: skip
            shell.request = _request(ws, base / "outputs")
            # What the shell's submit, comment and approve call, in this process (a subprocess each is slower).
            review.submit(ws, actor="rita", request=shell.request)
            review.comment(ws, actor="dac", request=shell.request, text="the small counts need a look", output="small")
            review.comment(ws, actor="dac", request=shell.request, text="between us", private=True)
            review.vote(ws, actor="dac", request=shell.request, decision="approve", outputs=("make/big",))
            query.result()
        yield shell


def _request(ws: Workspace, folder: Path) -> int:
    """Rita's request of two tables (written in ``folder``), as a run of her study's action ``make`` opens it,
    checked."""
    tables = {
        "big": pd.DataFrame({"group": ["a", "b"], "n": [40, 55]}),
        "small": pd.DataFrame({"group": ["x", "y", "z"], "n": [40, 3, 25]}),
    }
    folder.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("RESEARCH_KIT_TIER", "real")  # the sidecars say what the runner's would
        mp.setenv("RESEARCH_KIT_STUDY", STUDY)
        paths = {name: declare.table(frame, name, counts=["n"], population="everyone").resolve()
                 for name, frame in tables.items()}  # fmt: skip
    with audit.acting("rita"), ws.catalog() as conn, transaction(conn):
        cursor = conn.execute(
            "INSERT INTO requests (study, author, state, created_at, updated_at) VALUES (?, 'rita', 'pending', ?, ?)",
            (STUDY, now(), now()),
        )
        request = int(cursor.lastrowid or 0)
        for name, path in paths.items():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            add_version(conn, request, "make", name, path, digest, "moderately_sensitive", "rita", "e1", queue=None)
        check_request(conn, ws, request)
    return request


def iso(text: str) -> datetime:
    """An ISO 8601 time with its zone."""
    when = datetime.fromisoformat(text)
    assert when.tzinfo is not None, text
    return when


# -- the requests ----------------------------------------------------------------------------------------------------

SUMMARY_KEYS = {
    "id", "study", "author", "state", "created_at", "updated_at", "submitted_at", "released_at",
    "approvals_required", "counts", "reviewable", "approved", "outputs",
}  # fmt: skip
OUTPUT_KEYS = {"key", "action", "name", "status", "path", "extract", "approvals", "approved"}


def test_outputs_list_gives_each_request_with_its_outputs(shell: Shell) -> None:
    (request,) = shell.json("--as", "rita", "outputs", "list")
    assert set(request) == SUMMARY_KEYS
    assert (request["id"], request["study"], request["author"], request["state"]) == (
        shell.request, STUDY, "rita", "submitted"
    )  # fmt: skip
    iso(request["created_at"])
    iso(request["submitted_at"])
    assert request["released_at"] is None
    assert request["counts"] == {"gated": 0, "fail": 1, "review": 0, "pass": 1}
    assert (request["reviewable"], request["approved"]) == (2, 0)
    assert request["approvals_required"] == shell.ws.policy().review.approvals_required
    big, small = request["outputs"]
    assert set(big) == OUTPUT_KEYS
    assert (big["key"], big["action"], big["name"], big["status"], big["extract"]) == (
        "make/big", "make", "big", "pass", "e1"
    )  # fmt: skip
    assert big["path"].endswith("big.csv")
    assert (big["approvals"], big["approved"]) == (["dac"], request["approvals_required"] <= 1)
    assert (small["key"], small["status"], small["approvals"]) == ("make/small", "fail", [])


def test_outputs_list_filters_as_its_table_does(shell: Shell) -> None:
    of_study, pending, of_another = shell.jsons(
        ("--as", "rita", "outputs", "list", "--study", STUDY),
        ("--as", "rita", "outputs", "list", "--state", "pending"),
        ("--as", "rita", "outputs", "list", "--study", "another-study"),
    )
    assert [r["id"] for r in of_study] == [shell.request]
    assert pending == of_another == []


def test_review_list_gives_the_requests_awaiting_the_committee(shell: Shell) -> None:
    (awaiting,), every = shell.jsons(("--as", "dac", "review", "list"), ("--as", "dac", "review", "list", "--all"))
    assert (awaiting["id"], awaiting["state"], awaiting["study"]) == (shell.request, "submitted", STUDY)
    assert [r["id"] for r in every] == [shell.request]
    assert set(awaiting) == SUMMARY_KEYS


def test_review_show_gives_one_request_with_checks_and_the_comments_its_reader_may_read(shell: Shell) -> None:
    shown, as_author = shell.jsons(
        ("--as", "dac", "review", "show", str(shell.request)), ("--as", "rita", "review", "show", str(shell.request))
    )
    assert isinstance(shown, dict)
    assert set(shown) == SUMMARY_KEYS | {"comments"}
    assert (shown["id"], shown["study"], shown["state"]) == (shell.request, STUDY, "submitted")
    big, small = shown["outputs"]
    assert set(small) == OUTPUT_KEYS | {"gate_reasons", "notes", "flags", "differencing", "protection", "provenance"}
    assert small["key"] == "make/small"
    assert small["gate_reasons"] == []
    fail = [f for f in small["flags"] if f["severity"] == "fail"]
    assert [(f["rule"], f["row"], f["column"]) for f in fail] == [("threshold", 1, "n")]
    assert set(fail[0]) == {"rule", "severity", "row", "column", "reason"}
    assert small["provenance"] is None  # built without a run
    assert big["flags"] == []
    assert [(c["author"], c["visibility"], c["output"], c["body"]) for c in shown["comments"]] == [
        ("dac", "researcher", "make/small", "the small counts need a look"),
        ("dac", "committee", None, "between us"),
    ]
    iso(shown["comments"][0]["at"])
    # Rita reads her request without the committee's private comment, as on her terminal.
    assert [c["body"] for c in as_author["comments"]] == ["the small counts need a look"]
    assert "between us" not in shell.ok("--as", "rita", "review", "show", str(shell.request))


# -- budgets, users, the audit log, extracts, the key ----------------------------------------------------------------

BALANCE_KEYS = {"study", "ledger", "delta"} | {
    f"{amount}_{unit}" for amount in ("granted", "spent", "reserved", "remaining") for unit in ("rho", "epsilon")
}


def test_budget_show_lists_the_budgets_one_may_read(shell: Shell) -> None:
    (budget,) = shell.json("--as", "rita", "budget", "show")
    assert set(budget) == BALANCE_KEYS
    assert (budget["study"], budget["ledger"], budget["delta"]) == (STUDY, "real", shell.ws.policy().dp.delta)
    assert budget["granted_rho"] == pytest.approx(RHO)
    assert budget["spent_rho"] == pytest.approx(SPENT)
    assert budget["reserved_rho"] == 0
    assert budget["remaining_rho"] == pytest.approx(RHO - SPENT)
    assert budget["granted_epsilon"] > budget["granted_rho"]


def test_budget_show_of_a_study_is_one_object_with_its_spends(shell: Shell) -> None:
    budget = shell.json("--as", "rita", "budget", "show", STUDY)
    assert isinstance(budget, dict)
    assert set(budget) == BALANCE_KEYS | {"spends"}
    (spend,) = budget["spends"]
    assert set(spend) == {
        "id", "reserved_at", "spent_at", "who", "query", "source", "mechanism", "noise_scale", "rho", "epsilon",
        "state",
    }  # fmt: skip
    assert (spend["who"], spend["state"], spend["source"]) == ("rita", "spent", "e1")
    assert spend["rho"] == pytest.approx(SPENT)
    assert isinstance(spend["id"], int)
    assert isinstance(spend["noise_scale"], float)
    assert iso(spend["spent_at"]) >= iso(spend["reserved_at"])


def test_users_list_gives_each_user_and_their_roles(shell: Shell) -> None:
    found = {u["name"]: u for u in shell.json("--as", "stew", "users", "list")}
    assert set(found) == {"stew", "dac", "rita"}
    rita = found["rita"]
    assert set(rita) == {"name", "roles", "active", "has_password", "added_at", "added_by"}
    assert (rita["roles"], rita["active"], rita["has_password"], rita["added_by"]) == (
        ["researcher"], True, True, "stew"
    )  # fmt: skip
    assert found["dac"]["roles"] == ["committee"]
    iso(rita["added_at"])


def test_audit_show_gives_the_latest_entries_oldest_first(shell: Shell) -> None:
    entries = shell.json("--as", "dac", "audit", "show", "--last", "4")
    assert len(entries) == 4
    assert all(set(e) == {"seq", "ts", "actor", "action", "details", "readable"} for e in entries)
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert all(e["readable"] for e in entries)
    vote = next(e for e in entries if e["action"] == "review.approve")
    assert vote["actor"] == "dac"
    assert vote["details"]["request"] == shell.request
    iso(entries[-1]["ts"])


def test_extracts_lists_each_extract(shell: Shell) -> None:
    (extract,) = shell.json("--as", "rita", "extracts")
    assert set(extract) == {"id", "created_at", "patients", "content_hash", "key_fingerprint"}
    registered = get_extract(shell.ws, "e1")
    assert extract["id"] == "e1"
    assert extract["patients"] == registered.patients
    assert 0 < extract["patients"] <= PATIENTS  # those withheld or quarantined at ingest are not in it
    assert extract["content_hash"] == registered.content_hash
    assert extract["key_fingerprint"] == load_key(shell.key_file).fingerprint
    assert iso(extract["created_at"]) == iso(registered.created_at)


def test_key_show_gives_the_fingerprint_never_the_key(shell: Shell) -> None:
    out = shell.ok("--as", "stew", "key", "show", "--json")
    assert json.loads(out) == {"path": str(shell.key_file), "fingerprint": load_key(shell.key_file).fingerprint}
    secret = shell.key_file.read_text().strip()
    assert secret not in out
    assert secret[:16] not in out


# -- pipelines and the sandbox ---------------------------------------------------------------------------------------


def test_pipeline_check_gives_each_pipeline_and_its_actions_in_order(shell: Shell) -> None:
    project = shell.project
    first = project.notebook("first", "n = 1", "print(n)")
    second = project.notebook("second", "n = 1", "print(n)")
    path = project.pipeline("s1", {
        "count": {"notebook": first, "outputs": {"moderately_sensitive": {"counts": "counts.csv"}}},
        "plot": {"notebook": second, "needs": ["count"],
                 "outputs": {"moderately_sensitive": {"plot": "plot.png"}, "highly_sensitive": {"rows": "r.parquet"}}},
    })  # fmt: skip
    (pipeline,), twice = shell.jsons(("pipeline", "check", str(path)), ("pipeline", "check", str(path), str(path)))
    assert twice == [pipeline, pipeline]
    assert set(pipeline) == {"study", "title", "path", "budget", "actions"}
    assert (pipeline["study"], pipeline["title"], pipeline["budget"]) == ("s1", "Study s1", {"rho": 0.5})
    assert Path(pipeline["path"]).resolve() == path.resolve()
    count, plot = pipeline["actions"]
    assert set(count) == {"step", "name", "notebook", "needs", "outputs"}
    assert (count["step"], count["name"], count["needs"]) == (1, "count", [])
    assert count["notebook"].endswith("first.ipynb")
    assert count["outputs"] == [{"name": "counts", "path": "counts.csv", "sensitivity": "moderately_sensitive"}]
    assert (plot["step"], plot["needs"]) == (2, ["count"])
    assert {o["sensitivity"] for o in plot["outputs"]} == {"moderately_sensitive", "highly_sensitive"}


def test_pipeline_check_prints_no_json_when_a_file_is_invalid(shell: Shell) -> None:
    path = shell.project.pipeline("s2", {"bad": {"notebook": "notebooks/missing.ipynb"}}, name="bad")
    good = shell.project.pipeline("s3", {}, name="good")
    done = shell.run("pipeline", "check", str(good), str(path), "--json")
    assert done.returncode != 0
    assert done.stdout == ""


def test_sandbox_check_says_how_code_is_confined(shell: Shell) -> None:
    text, machine = shell.both("--as", "stew", "sandbox", "check")
    assert machine.returncode == text.returncode  # exit 5 where nothing can confine researcher code
    if machine.returncode != 0:
        assert (machine.stdout, machine.stderr) == ("", text.stderr)
        return
    found = json.loads(machine.stdout)
    assert set(found) == {"mode", "bwrap", "limits", "notices"}
    assert found["mode"] in text.stdout
    policy = shell.ws.policy().runner
    assert found["limits"]["cpu_seconds"] == policy.cpu_seconds
    assert found["limits"]["memory_bytes"] == policy.memory_mb * 1024 * 1024


# -- the same permissions; tables in a pipe -------------------------------------------------------------------------

REFUSED = [
    ("rita", "audit", "show"),
    ("rita", "key", "show"),
    ("rita", "review", "show", "99"),
    ("rita", "budget", "show", "another-study"),
    ("dac", "outputs", "list", "--state", "nonsense"),
]


@pytest.mark.parametrize("args", REFUSED, ids=lambda a: " ".join(a))
def test_json_is_refused_as_the_table_is(shell: Shell, args: tuple[str, ...]) -> None:
    who, *command = args
    text, machine = shell.both("--as", who, *command)
    assert text.returncode in (3, 4, 5)
    assert (machine.returncode, machine.stderr) == (text.returncode, text.stderr)
    assert machine.stdout == text.stdout == ""


def test_tables_in_a_pipe_keep_every_cell_whole(shell: Shell) -> None:
    for args in (("budget", "show"), ("outputs", "list")):
        piped = shell.run("--as", "rita", *args, columns=None)  # no COLUMNS: the width of a plain pipe
        assert piped.returncode == 0, piped.stderr
        assert STUDY in piped.stdout
        assert "…" not in piped.stdout
    narrow = shell.run("--as", "rita", "outputs", "list", columns="80")  # a width asked for is kept
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert STUDY not in narrow.stdout


@pytest.mark.slow  # starts 'research-kit serve'
def test_a_client_of_the_service_mode_gets_the_same_json_and_whole_tables(shell: Shell, tmp_path: Path) -> None:
    served = Workspace(tmp_path / "ws")
    shutil.copytree(shell.ws.root, served.root)
    served.policy_path.write_text(served.policy_path.read_text().replace('mode = "embedded"', 'mode = "service"'))
    with running_server(served) as url:
        client = Shell(served, {"RESEARCH_KIT_URL": url, "RESEARCH_KIT_HOME": str(tmp_path / "not-the-workspace"),
                                "XDG_RUNTIME_DIR": str(tmp_path / "client-run")}, shell.key_file, shell.request,
                       shell.project)  # fmt: skip
        login = subprocess.run(
            [sys.executable, "-m", "research_kit", "login", "rita", "--password-stdin"], input=f"{PASSWORD}\n",
            env={**os.environ, **client.env}, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert login.returncode == 0, login.stderr
        assert client.json("outputs", "list") == shell.json("--as", "rita", "outputs", "list")
        piped = client.run("outputs", "list", columns=None)  # the client draws into a pipe: the server, wide
        assert piped.returncode == 0, piped.stderr
        assert STUDY in piped.stdout
