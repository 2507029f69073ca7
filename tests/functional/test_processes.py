"""``research-kit lab`` and ``research-kit serve`` stop with every process they started, on SIGTERM and SIGINT.

Each test starts the command as a user does (a real process, in a scratch workspace), waits until it serves
and has children at work (a kernel; a client's run), reads its process tree, sends the signal, and checks the
exit code (130 for SIGINT, 143 for SIGTERM) and that nothing of the tree is still running. The lab runs under
bwrap (the default: one PID namespace) and with the sandbox off (JupyterLab and each kernel in a session of its
own, so outside the server's process group); if ``research-kit lab`` is killed outright, what it started ends
too. The session-wide check of ``tests/conftest.py`` then finds nothing left behind.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.conftest import Project, permit, sign_in
from tests.functional.test_lab import _post, publish_twin, run_in_kernel
from tests.functional.webapp import PASSWORD, free_port, left_running, process_tree

from research_kit.core.workspace import Workspace

# Each test starts JupyterLab and a kernel (6 s) or the web app and a run (40 s); test_lab.py stops a lab with
# SIGTERM, and checks the same, in the main suite.
pytestmark = pytest.mark.slow


def set_sandbox(ws: Workspace, mode: str) -> None:
    policy = ws.policy_path
    text, n = re.subn(r'^sandbox = ".*"$', f'sandbox = "{mode}"', policy.read_text(), flags=re.M)
    assert n == 1
    policy.write_text(text)


def kernels(procs: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for proc in procs:
        try:
            if "ipykernel" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """The lab's TMPDIR: short (its sockets' paths must fit in 108 bytes), and this test's own."""
    folder = Path(tempfile.mkdtemp(prefix="rkt-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start_lab(project: Project, tmp_path: Path, tmp: Path) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    """``research-kit lab`` with one kernel started; the process and its tree (the kernel in it)."""
    publish_twin(project)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    sign_in(project.ws, **{"test-runner": "researcher"})
    port = free_port()
    env = {**os.environ, "RESEARCH_KIT_HOME": str(project.ws.root), "TMPDIR": str(tmp)}
    lab = subprocess.Popen(
        [sys.executable, "-m", "research_kit", "lab", "--port", str(port), "--notebooks", str(notebooks),
         "--home", str(tmp_path / "lab")],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert lab.stdout is not None
        token = next((m.group(1) for line in lab.stdout if (m := re.search(r"token=([\w-]+)", line))), None)
        assert token, "research-kit lab did not start"
        kernel = _post(f"http://127.0.0.1:{port}/api/kernels?token={token}", deadline=time.monotonic() + 60)
        assert run_in_kernel(port, token, kernel["id"], "print('up')") == "up\n"  # as when someone works in it
        tree = process_tree(lab.pid)
        assert kernels(tree), [" ".join(p.cmdline()) for p in tree]
    except BaseException:
        lab.terminate()
        out, err = lab.communicate(timeout=60)
        print(out, err)  # shown with the failure
        raise
    return lab, tree


@pytest.mark.parametrize(
    ("sig", "sandbox"),
    [(signal.SIGTERM, "bwrap"), (signal.SIGINT, "bwrap"), (signal.SIGTERM, "off")],
    ids=["SIGTERM-bwrap", "SIGINT-bwrap", "SIGTERM-off"],
)
def test_the_lab_stops_with_its_server_and_kernels(
    project: Project, tmp_path: Path, short_tmp: Path, sig: signal.Signals, sandbox: str
) -> None:
    set_sandbox(project.ws, sandbox)
    lab, tree = start_lab(project, tmp_path, short_tmp)
    if sandbox == "off":  # each kernel in a session of its own: not in the server's process group
        server = next(p for p in tree if "jupyterlab" in " ".join(p.cmdline()))
        assert all(os.getsid(k.pid) != os.getsid(server.pid) for k in kernels(tree))
    lab.send_signal(sig)
    out, err = lab.communicate(timeout=60)
    assert lab.returncode == 128 + sig, out + err
    assert f"lab stopped ({sig.name})" in out
    assert left_running(tree) == []
    assert list(short_tmp.glob("rk-lab-*")) == []  # its socket folder and plan are removed


def test_what_a_killed_lab_started_ends_too(project: Project, tmp_path: Path, short_tmp: Path) -> None:
    # Without bwrap nothing shares the lab's fate by itself: the server gets SIGKILL from the kernel when its
    # parent dies (PR_SET_PDEATHSIG), and each kernel ends itself when its server is gone.
    set_sandbox(project.ws, "off")
    lab, tree = start_lab(project, tmp_path, short_tmp)
    lab.kill()
    lab.communicate(timeout=30)
    assert left_running(tree, timeout=20) == []


def api(url: str, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"{url}/api/v1{path}", data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_with_the_runs_it_started(review_ws: Workspace, tmp_path: Path, sig: signal.Signals) -> None:
    policy = review_ws.policy_path
    policy.write_text(policy.read_text().replace('mode = "embedded"', 'mode = "service"'))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RESEARCH_KIT_HOME": str(review_ws.root)}
    env.pop("RESEARCH_KIT_USER", None)
    serve = subprocess.Popen(
        [sys.executable, "-m", "research_kit", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                token = api(url, "/login", {"name": "rita", "password": PASSWORD})["token"]
                break
            except OSError:
                assert serve.poll() is None, serve.communicate()
                assert time.monotonic() < deadline, "research-kit serve did not start"
                time.sleep(0.2)
        project = Project(tmp_path / "project", review_ws)
        notebook = project.notebook("wait", "shift = 0", "import time\ntime.sleep(600)")
        pipeline = project.pipeline("waits", {"make": {"notebook": notebook, "outputs": {}}}, permitted=False)
        permit(review_ws, "waits", "rita")  # rita's study, under its data permit
        files = {
            name: base64.b64encode((project.root / name).read_bytes()).decode()
            for name in (notebook, str(pipeline.relative_to(project.root)))
        }
        body = {"pipeline": str(pipeline.relative_to(project.root)), "files": files, "options": ["--extract", "e1"]}
        # A client waiting on a run the server started (a process of its own, with its kernel).
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, url, token, json.dumps(body)], stdout=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while not kernels(tree := process_tree(serve.pid)) and time.monotonic() < deadline:
            assert client.poll() is None, client.communicate()
            time.sleep(0.2)
        assert kernels(tree), [" ".join(p.cmdline()) for p in tree]
        serve.send_signal(sig)
        out, err = serve.communicate(timeout=60)
        assert serve.returncode == 128 + sig, out + err
        assert f"stopped ({sig.name})" in out
        assert left_running(tree) == []
        answer, _ = client.communicate(timeout=30)  # the client had its answer: the run was stopped
        assert json.loads(answer)["exit_code"] != 0
    finally:
        for proc in (serve, client):
            if proc is not None and proc.poll() is None:  # the test failed: leave nothing behind all the same
                for each in process_tree(proc.pid):
                    each.kill()
                proc.communicate()


CLIENT = """
import sys, urllib.request
request = urllib.request.Request(sys.argv[1] + "/api/v1/run", data=sys.argv[3].encode(),
                                 headers={"content-type": "application/json", "authorization": "Bearer " + sys.argv[2]})
with urllib.request.urlopen(request, timeout=300) as response:
    print(response.read().decode())
"""
