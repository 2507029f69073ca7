"""Signing in on the command line, driven as people would drive it: ``research-kit login`` and what it allows."""

from __future__ import annotations

import contextvars
import json
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pyotp
import pytest
from tests.conftest import PASSWORD
from typer.testing import CliRunner

from research_kit.cli import COMMANDS, app, command, common
from research_kit.core import identity
from research_kit.core.workspace import Workspace

from .conftest import Run, set_up_codes
from .test_cli import assert_one_line_error

LINE = f"{PASSWORD}\n"
NO_CODE = "research-kit: bad input: no one-time code on standard input"


def add(cli: Run, name: str, role: str, *acting: str) -> None:
    cli(*acting, "users", "add", name, "--role", role, "--password-stdin", input_text=LINE)


def login(cli: Run, name: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return cli("login", name, "--password-stdin", input_text=LINE, **kw)  # type: ignore[arg-type]


def test_the_first_steward_needs_no_sign_in_then_everyone_signs_in(cli: Run, home: Path, tmp_path: Path) -> None:
    cli("init")
    assert_one_line_error(cli("users", "list", check=False), 5, "no user yet", "users add NAME --role steward")
    assert_one_line_error(cli("users", "add", "rita", "--role", "researcher", check=False), 5, "add a steward first")
    add(cli, "sam", "steward")  # the bootstrap: no sign-in, a password asked
    # From now on nobody acts without signing in: not by naming a user, not through the environment.
    refused = cli("users", "add", "eve", "--role", "steward", "--password-stdin", input_text=LINE, check=False)
    assert_one_line_error(refused, 5, "sign in first: research-kit login NAME")
    as_sam = cli("--as", "sam", "users", "add", "eve", "--role", "steward", check=False)
    assert_one_line_error(as_sam, 5, "you are not signed in as 'sam'")
    env_sam = cli("users", "add", "eve", "--role", "steward", env={"RESEARCH_KIT_USER": "sam"}, check=False)
    assert_one_line_error(env_sam, 5, "sign in first")
    assert_one_line_error(
        cli("login", "sam", "--password-stdin", input_text="not the password\n", check=False),
        5,
        "wrong user name, password or code",
    )
    assert "signed in as sam (steward)" in login(cli, "sam").stdout
    add(cli, "rita", "researcher")
    assert "rita" in cli("users", "list").stdout
    # The token file: the caller's alone, holding no password; the catalog holds only the token's hash.
    folder = tmp_path / "run" / "research-kit"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (token_file,) = folder.glob("sessions-*.json")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    tokens = json.loads(token_file.read_text())
    assert list(tokens) == ["sam"]
    assert PASSWORD not in token_file.read_text()
    with sqlite3.connect(home / "catalog.sqlite") as conn:
        stored = [r[0] for r in conn.execute("SELECT token_sha256 FROM sessions WHERE kind = 'cli'")]
    assert tokens["sam"] not in stored
    assert len(stored) == 1
    entries = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert [e["actor"] for e in entries if e["action"] == "user.add"] == ["sam", "sam"]
    assert any(e["action"] == "cli.signin" and e["actor"] == "sam" for e in entries)


def test_several_sessions_are_picked_with_as_and_only_among_ones_own(cli: Run, home: Path, tmp_path: Path) -> None:
    cli("init", "--steward", "sam", "--password-stdin", input_text=LINE)
    login(cli, "sam")
    add(cli, "rita", "researcher")
    add(cli, "carla", "committee")
    assert "sam" in cli("users", "list").stdout  # one session: no --as needed
    login(cli, "rita")
    assert_one_line_error(cli("users", "list", check=False), 5, "signed in as rita, sam: say which with --as NAME")
    assert "carla" in cli("--as", "rita", "users", "list").stdout
    assert_one_line_error(cli("--as", "carla", "users", "list", check=False), 5, "not signed in as 'carla'")
    # Another person at another shell (their own runtime folder) holds none of these sessions.
    elsewhere = {"XDG_RUNTIME_DIR": str(tmp_path / "other-run")}
    assert_one_line_error(cli("--as", "sam", "users", "list", env=elsewhere, check=False), 5, "not signed in")
    # A token file others could read is refused, as ssh refuses a loose key.
    (token_file,) = (tmp_path / "run" / "research-kit").glob("sessions-*.json")
    token_file.chmod(0o644)
    assert_one_line_error(cli("--as", "sam", "users", "list", check=False), 5, "others may read this session file")
    token_file.chmod(0o600)
    # The name a token is filed under is not believed: rita's token filed as sam's still acts as rita.
    saved = token_file.read_text()
    tokens = json.loads(saved)
    token_file.write_text(json.dumps({"sam": tokens["rita"]}))
    assert_one_line_error(
        cli("users", "add", "eve", "--role", "steward", check=False), 5, "'rita' is a researcher; adding a user"
    )
    token_file.write_text(saved)
    assert "signed out: rita" in cli("logout", "rita").stdout
    assert_one_line_error(cli("--as", "rita", "users", "list", check=False), 5, "not signed in as 'rita'")
    # A session ends when its user is disabled, and when it is older than [auth].session_hours.
    login(cli, "rita")
    cli("--as", "sam", "users", "disable", "rita")
    assert_one_line_error(cli("--as", "rita", "users", "list", check=False), 5, "not signed in as 'rita'")
    with sqlite3.connect(home / "catalog.sqlite") as conn:
        conn.execute("UPDATE sessions SET created_at = '2000-01-01T00:00:00+00:00'")
    assert_one_line_error(cli("users", "list", check=False), 5, "sign in first")
    assert "not signed in" in cli("logout").stdout


@pytest.mark.slow
def test_committee_members_and_stewards_give_a_one_time_code_when_the_policy_asks(
    cli: Run, home: Path, tmp_path: Path
) -> None:
    cli("init", "--steward", "sam", "--password-stdin", input_text=LINE)
    policy = home / "research-kit.toml"
    policy.write_text(policy.read_text().replace('second_factor = "service"', 'second_factor = "always"'))
    # sam's first sign-in sets the codes up: the address goes to the terminal once, a code from it confirms.
    secret = set_up_codes({}, "sam", LINE, cwd=tmp_path).secret
    cli("logout")
    without = login(cli, "sam", check=False)
    assert_one_line_error(without, 3, "no one-time code on standard input")
    wrong = cli("login", "sam", "--password-stdin", "--code", "000000", input_text=LINE, check=False)
    if pyotp.TOTP(secret).now() != "000000":
        assert_one_line_error(wrong, 5, "wrong user name, password or code")
    # The next step's code is good (a slow clock), and good once: a code seen over a shoulder is spent.
    code = pyotp.TOTP(secret).at(time.time() + 30)
    assert "signed in as sam" in cli("login", "sam", "--password-stdin", "--code", code, input_text=LINE).stdout
    replayed = cli("login", "sam", "--password-stdin", "--code", code, input_text=LINE, check=False)
    assert_one_line_error(replayed, 5, "wrong user name, password or code")
    # A researcher gives no code; given the committee role, her session ends and she must set codes up.
    add(cli, "rita", "researcher")
    assert "signed in as rita" in login(cli, "rita").stdout
    cli("--as", "sam", "users", "add", "rita", "--role", "committee")
    assert_one_line_error(cli("--as", "rita", "users", "list", check=False), 5, "not signed in as 'rita'")
    enrol = login(cli, "rita", check=False)  # the setup's address is shown, then the code is asked for
    assert (enrol.returncode, enrol.stderr.splitlines()[-1]) == (3, NO_CODE)
    # A lost phone: a steward resets the codes; the user's sessions end and the next sign-in sets them up again.
    cli("users", "reset-codes", "sam")
    assert_one_line_error(cli("users", "list", check=False), 5, "sign in first")
    enrol = login(cli, "sam", check=False)
    assert (enrol.returncode, enrol.stderr.splitlines()[-1]) == (3, NO_CODE)
    entries = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert any(e["action"] == "user.second_factor" and e["actor"] == "sam" for e in entries)
    assert any(e["action"] == "user.codes_reset" and e["details"]["user"] == "sam" for e in entries)
    assert secret not in (home / "audit.jsonl").read_text()


def test_demo_mode_believes_as_and_says_so_and_refuses_real_data(cli: Run, home: Path, tmp_path: Path) -> None:
    cli("init", "--steward", "sam", "--password-stdin", input_text=LINE)
    policy = home / "research-kit.toml"
    embedded = policy.read_text()
    policy.write_text(embedded.replace('mode = "embedded"', 'mode = "demo"'))
    shown = cli("--as", "sam", "users", "list")
    assert shown.stderr.strip() == f"research-kit: {identity.DEMO_WARNING}"
    assert_one_line_error(cli("login", "sam", "--password-stdin", input_text=LINE, check=False), 5, "demo mode")
    # An extract the simulator did not make: demo mode is refused until a signed-in steward opts in.
    with sqlite3.connect(home / "catalog.sqlite") as conn:
        conn.execute(
            "INSERT INTO extracts (id, created_at, content_hash, key_fingerprint, patients, manifest) VALUES "
            "('real-1', '2026-12-01', 'x', 'y', 10, '{\"simulated\": false}')"
        )
    assert_one_line_error(cli("--as", "sam", "users", "list", check=False), 5, "'real-1' was not made by the simulator")
    policy.write_text(embedded)
    login(cli, "sam")
    cli("users", "allow-demo", "--reason", "training day on a copy")
    policy.write_text(embedded.replace('mode = "embedded"', 'mode = "demo"'))
    assert "sam" in cli("--as", "anyone", "users", "list").stdout
    policy.write_text(embedded)  # and a steward takes it back
    assert "refused again" in cli("users", "disallow-demo").stdout
    policy.write_text(embedded.replace('mode = "embedded"', 'mode = "demo"'))
    assert_one_line_error(cli("--as", "sam", "users", "list", check=False), 5, "was not made by the simulator")
    entries = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert any(e["action"] == "auth.demo_allowed" and e["actor"] == "sam" for e in entries)
    assert any(e["action"] == "auth.demo_disallowed" and e["actor"] == "sam" for e in entries)


# Commands that act for no one, or bootstrap: they run without a sign-in (serve and lab start servers: not run here).
NO_SIGN_IN = {
    "init",
    "login",
    "logout",
    "simulate",
    "audit verify",
    "pipeline check",
    "mapping check",
    "demo",
    "serve",
    "lab",
}


def _leaves() -> list[tuple[str, ...]]:
    found = []
    for name in COMMANDS:
        cmd = command(name)
        if hasattr(cmd, "commands"):  # a group: budget, review, users ...
            found += [(name, sub) for sub in cmd.commands]
        else:
            found.append((name,))
    return found


def _placeholder_args(path: tuple[str, ...]) -> list[str]:
    """Enough arguments for the command to parse: each required argument and option gets a harmless value."""
    cmd = command(path[0])
    if len(path) > 1:
        cmd = cmd.commands[path[1]]  # type: ignore[attr-defined]
    args: list[str] = []
    for param in cmd.params:
        if not param.required:
            continue
        value = "1"  # a name, a number and a request id alike
        if param.param_type_name == "option":
            args += [param.opts[0], value]
        else:
            args.append(value)
    return args


def test_every_command_acts_as_a_signed_in_user(home: Path, workspace: Workspace) -> None:
    from tests.conftest import people

    people(workspace, rita="researcher")
    runner = CliRunner()
    unguarded = []
    for path in _leaves():
        if " ".join(path) in NO_SIGN_IN or path[0] in NO_SIGN_IN:
            continue
        common._acting.clear()
        result = contextvars.copy_context().run(runner.invoke, app, [*path, *_placeholder_args(path)])
        refusal = str(result.exception) if result.exception else ""
        if "sign in first" not in refusal:
            unguarded.append((" ".join(path), result.exit_code, refusal or result.output[-200:]))
    assert unguarded == []
    assert len(_leaves()) > 30


@pytest.mark.parametrize("as_name", ["rita", "nobody"])
def test_as_never_reaches_a_user_one_has_not_signed_in_as(home: Path, workspace: Workspace, as_name: str) -> None:
    from tests.conftest import people

    people(workspace, rita="researcher")
    common._acting.clear()
    argv = ["--as", as_name, "budget", "grant", "s", "--rho", "0.1", "--owner", "rita"]
    result = contextvars.copy_context().run(CliRunner().invoke, app, argv)
    assert f"you are not signed in as {as_name!r}" in str(result.exception)


@pytest.mark.slow
def test_failed_sign_ins_slow_only_that_account_and_say_so(cli: Run, home: Path) -> None:
    from research_kit.core import sessions

    cli("init", "--steward", "sam", "--password-stdin", input_text=LINE)
    ws = Workspace(home)
    for _ in range(12):  # another OS account of this machine guessing at random names
        with pytest.raises(sessions.SignInRefused):
            sessions.sign_in(ws, "guess", "wrong", address="command line, uid 99999", kind="cli")
    assert "signed in as sam" in login(cli, "sam").stdout  # this account is not slowed by that one
    for _ in range(6):
        wrong = cli("login", "sam", "--password-stdin", input_text="not the password\n", check=False)
        assert_one_line_error(wrong, 5, "wrong user name, password or code")
    # Four more failures just now (as a guesser's next tries would be): the wait is then seconds long, longer than
    # a command takes to start on a busy machine (the first wait, half a second, could pass before it is read).
    with ws.catalog() as conn:
        last = conn.execute("SELECT user, address, at FROM signin_failures ORDER BY id DESC LIMIT 1").fetchone()
        conn.executemany("INSERT INTO signin_failures (user, address, at) VALUES (?, ?, ?)", [tuple(last)] * 4)
    slowed = login(cli, "sam", check=False)  # the right password, too soon: refused unread, and told why
    assert_one_line_error(slowed, 5, "too many failed sign-ins: try again in")
