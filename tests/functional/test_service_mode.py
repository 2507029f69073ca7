"""The service mode: the command line as a client of ``research-kit serve`` (RESEARCH_KIT_URL), and its JSON API.

The review flow itself runs in both modes in ``test_review_cli.py``; here, what only the service mode has:
what a client sends and refuses, the API's credential, and the JSON it answers.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.functional.webapp import PASSWORD, S1, S2, Browser, running_server

from research_kit.core import identity
from research_kit.core.workspace import Workspace

pytestmark = pytest.mark.slow  # each test starts 'research-kit serve'
LINE = f"{PASSWORD}\n"
NOWHERE = "/nonexistent/research-kit-workspace"  # a client never opens (or makes) a workspace


def api(url: str, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/api/v1{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def server(review_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "client-run"))
    policy = review_ws.policy_path
    policy.write_text(policy.read_text().replace('mode = "embedded"', 'mode = "service"'))
    with running_server(review_ws) as url:
        yield url


def client(url: str, *args: str, input_text: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLUMNS": "200", "RESEARCH_KIT_URL": url, "RESEARCH_KIT_HOME": NOWHERE}
    return subprocess.run(
        [sys.executable, "-m", "research_kit", *args], env={**environment, **env}, capture_output=True, text=True,
        timeout=300, check=False, input=input_text,
    )  # fmt: skip


def one_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert text in done.stderr


def test_a_client_sends_what_people_do_and_runs_nothing_itself(server: str, review_ws: Workspace) -> None:
    rita = client(server, "login", "rita", "--password-stdin", input_text=LINE)
    assert "signed in as rita (researcher)" in rita.stdout
    assert "signed in as rob" in client(server, "login", "rob", "--password-stdin", input_text=LINE).stdout
    listed = client(server, "--as", "rita", "outputs", "list")
    assert listed.returncode == 0, listed.stderr
    assert "s1" in listed.stdout
    assert "s2" not in listed.stdout  # rob's study: the server acted as rita
    one_line(client(server, "outputs", "list"), 5, "as rita, rob: say which with --as NAME")
    one_line(client(server, "--as", "carla", "review", "list"), 5, "not signed in as 'carla' at")
    # RESEARCH_KIT_USER is nobody's credential: the server acts as the token's user.
    as_rob = client(server, "--as", "rob", "review", "show", str(S1), RESEARCH_KIT_USER="rita")
    one_line(as_rob, 4, f"no review request {S1}")
    # What runs on the server's machine only is refused here, before anything; help still works.
    one_line(client(server, "--as", "rita", "ingest", "x", "--extract", "y"), 3, "runs on the server's machine only")
    one_line(client(server, "init"), 3, "runs on the server's machine only")
    assert "Usage" in client(server, "ingest", "--help").stdout
    one_line(client(server, "key", "new", "--path", "--help"), 3, "runs on the server's machine only")
    assert not (Path.cwd() / "--help").exists()
    one_line(client("http://example.org", "--as", "rita", "review", "list"), 3, "give http://127.0.0.1:PORT")
    one_line(client("http://127.0.0.1:1", "login", "rita", "--password-stdin", input_text=LINE), 3, "cannot reach")
    one_line(client(server, "login", "rita", "--password-stdin", input_text="wrong password\n"), 5, "wrong user name")
    # A session ended at the server (a sign-out elsewhere, a disabled user) ends here too, in one line.
    assert "signed out: rob" in client(server, "logout", "rob").stdout
    token = identity.stored_tokens(server)["rita"]
    api(server, "/logout", {}, token)
    one_line(client(server, "review", "list"), 5, "your sign-in as rita at")
    assert identity.stored_tokens(server) == {}
    assert not Path(NOWHERE).exists()


def test_the_json_api_takes_a_command_line_token_only(server: str, review_ws: Workspace) -> None:
    status, answer = api(server, "/login", {"name": "rob", "password": PASSWORD})
    assert status == 200
    token = answer["token"]
    assert answer["roles"] == ["researcher"]
    assert api(server, "/whoami", token=token) == (200, {"user": "rob", "roles": ["researcher"]})
    status, requests = api(server, "/requests", token=token)
    assert status == 200
    assert [r["id"] for r in requests] == [S2]  # only his own
    assert api(server, f"/requests/{S1}", token=token)[0] == 404
    status, budgets = api(server, "/budgets", token=token)
    assert status == 200
    assert budgets == []  # s1's budget is rita's study
    # No token, a made-up one, or a web app session's cookie token: refused alike.
    assert api(server, "/whoami")[0] == 401
    assert api(server, "/whoami", token="made-up")[0] == 401
    browser = Browser(review_ws).sign_in("rob")
    cookie = browser.client.cookies.get("rk_session")
    assert cookie
    assert api(server, "/whoami", token=cookie)[0] == 401
    # A command names no other user, and only what a client may run.
    assert api(server, "/command", {"argv": ["--as", "carla", "review", "list"]}, token)[0] == 400
    assert api(server, "/command", {"argv": ["review", "list", "--as", "carla"]}, token)[0] == 400
    status, answer = api(server, "/command", {"argv": ["ingest", "x", "--extract", "y"]}, token)
    assert (status, "is not run through the server" in answer["error"]) == (400, True)
    status, answer = api(server, "/command", {"argv": ["review", "list", "--all"]}, token)
    assert status == 200
    assert answer["exit_code"] == 0
    assert "s2" in answer["stdout"]
    # Where a server's processes connect, and how many it starts, is never a client's choice.
    for option in (["--scheduler", "tcp://127.0.0.1:1"], ["--executor=dask"], ["--workers", "30"]):
        status, answer = api(server, "/command", {"argv": ["rerun", "--extract", "e1", *option]}, token)
        assert (status, "the server's operator chooses these" in answer["error"]) == (400, True)
    # What the web app shows only the committee and stewards, the command line does not show a researcher.
    status, answer = api(server, "/command", {"argv": ["audit", "show"]}, token)
    assert answer["exit_code"] == 5
    assert "reading the audit log needs the committee or steward role" in answer["stderr"]
    status, answer = api(server, "/command", {"argv": ["budget", "show", "s1"]}, token)
    assert (answer["exit_code"], "its budget is read by its owners" in answer["stderr"]) == (5, True)
    status, answer = api(server, "/command", {"argv": ["budget", "show"]}, token)
    assert "s1" not in answer["stdout"]
    # A committee member signs in with a one-time code; codes are never set up over the network.
    status, answer = api(server, "/login", {"name": "carla", "password": PASSWORD})
    assert (status, answer["enrol"], "set up in person" in answer["error"]) == (403, True, True)
    status, answer = api(server, "/login", {"name": "carla", "password": PASSWORD, "enrol": "A" * 32, "code": "1"})
    assert (status, "set up in person" in answer["error"]) == (400, True)
    status, answer = api(server, "/login", {"name": "carla", "password": "not it"})
    assert (status, answer) == (401, {"error": "wrong user name, password or code"})
    # A body larger than any request needs is refused before it is read whole; so is a huge password.
    status, _ = api(server, "/login", {"name": "rob", "password": "x" * 300_000})
    assert status in (400, 413)
    status, answer = api(server, "/login", {"name": "rob", "password": "x" * 200_000})
    assert (status, answer) == (401, {"error": "wrong user name, password or code"})


def test_a_client_runs_a_pipeline_its_project_sent_along(server: str, review_ws: Workspace, tmp_path: Path) -> None:
    from tests.conftest import Project, permit
    from tests.functional.webapp import OTHER_NOTEBOOK

    project = Project(tmp_path / "rita-project", review_ws)
    notebook = project.notebook("counts", "shift = 0", OTHER_NOTEBOOK)
    outputs = {"moderately_sensitive": {"other": "other.csv"}}
    action = {"make": {"notebook": notebook, "parameters": {"shift": 1}, "outputs": outputs}}
    pipeline = project.pipeline("svc", action, permitted=False)
    permit(review_ws, "svc", "rita")  # the committee granted rita's study its data permit
    client(server, "login", "rita", "--password-stdin", input_text=LINE)
    ran = client(server, "run", str(pipeline), "--extract", "e1")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "succeeded" in ran.stdout
    kept = review_ws.root / "projects" / "rita"
    assert (kept / "pipelines" / "svc.yaml").read_bytes() == pipeline.read_bytes()
    assert (kept / notebook).is_file()
    with review_ws.catalog() as conn:
        row = conn.execute("SELECT actor, pipeline FROM runs WHERE study = 'svc'").fetchone()
    assert (row["actor"], row["pipeline"]) == ("rita", str(kept / "pipelines" / "svc.yaml"))
    # Another researcher's project declaring rita's study is refused, as on the embedded command line.
    client(server, "login", "rob", "--password-stdin", input_text=LINE)
    hijack = client(server, "--as", "rob", "run", str(pipeline))
    assert hijack.returncode == 5, hijack.stderr
    assert "(study svc) does not name rob: running its pipeline is for its users only" in hijack.stderr
    # Only the project's own files travel, each inside the user's own projects folder.
    token = identity.stored_tokens(server)["rob"]
    for files in ({"../escape.yaml": ""}, {".git/hooks/x": ""}, {"/etc/x": ""}):
        status, answer = api(server, "/run", {"pipeline": next(iter(files)), "files": files}, token)
        assert status == 400, answer
    status, answer = api(server, "/run", {"pipeline": "p.yaml", "files": {"p.yaml": ""}, "options": ["--as", "sam"]},
                         token)  # fmt: skip
    assert (status, "run option '--as'" in answer["error"]) == (400, True)
    # A notebook the stored pipeline names must be one of the project's own files: never another user's.
    steal = pipeline.read_text().replace(notebook, "../rita/" + notebook)
    files = {"pipelines/steal.yaml": base64.b64encode(steal.encode()).decode()}
    status, answer = api(server, "/run", {"pipeline": "pipelines/steal.yaml", "files": files}, token)
    assert (status, "one of the project's own files" in answer["error"]) == (400, True), answer
    assert not (review_ws.root / "projects" / "rob" / "pipelines" / "steal.yaml").exists()
    assert not (review_ws.root / "projects" / "escape.yaml").exists()
