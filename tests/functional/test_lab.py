"""``research-kit lab``: JupyterLab on the synthetic twin, server and kernels in one sandbox.

The test starts the command as a researcher would, asks the server for a kernel over its REST API and runs
code in it through the server's websocket (as a browser does): what the kernel's environment holds, what
``rk.load()`` gives, escapes that must fail, and symlinks the server must not serve.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import Project, grant, sign_in
from tests.functional.webapp import free_port, left_running, process_tree

from research_kit.core.extracts import get_extract
from research_kit.lab import check_notebooks_folder, prepare_lab_home

PROBE = """
import json, os
import research_kit as rk
from research_kit.core.errors import MissingData
twin = len(rk.load("patients"))
os.environ["RESEARCH_KIT_TIER"] = "real"  # a researcher trying the runner's door
try:
    rk.load("patients")
    real = "read"
except MissingData as exc:
    real = str(exc)
print(json.dumps({"env": dict(os.environ), "twin": twin, "real": real}))
"""


def publish_twin(project: Project) -> int:
    """Publish the e2 extract's tables as a twin (the mechanics under test here are the lab's, not SDV's)."""
    twin = project.ws.synthetic_dir / "e2"
    shutil.copytree(get_extract(project.ws, "e2").path, twin)
    (twin / "twin.json").write_text(json.dumps({"extract": "e2", "content_hash": "x", "reference_year": 2026,
                                                "published_at": "2026-11-25T00:00:00+00:00"}))  # fmt: skip
    return len(pd.read_parquet(twin / "patients.parquet"))


def test_the_lab_home_holds_twins_and_grants_only(project: Project, tmp_path: Path) -> None:
    from research_kit.dp import ledger

    publish_twin(project)
    grant(project.ws, "delay", 0.3, owner="test-runner")
    grant(project.ws, "robs", 0.2, owner="rob")
    grant(project.ws, "gone", 0.2, owner="test-runner")
    with project.ws.catalog() as conn:  # a permit revoked lends the lab no budget
        conn.execute("UPDATE permits SET state = 'revoked', revoked_at = '2026-01-01' WHERE study = 'gone'")
    lab = prepare_lab_home(project.ws, tmp_path / "lab", "test-runner")
    assert sorted(p.name for p in lab.root.iterdir() if p.suffix not in (".sqlite-wal", ".sqlite-shm")) == [
        "audit.jsonl",
        "catalog.sqlite",
        "owner",
        "research-kit.toml",
        "synthetic",
        "tmp",
    ]
    assert (lab.synthetic_dir / "e2" / "patients.parquet").is_file()
    assert ledger.balance(lab, "delay", "sandbox").granted == ledger.balance(project.ws, "delay").granted
    with lab.catalog() as conn:  # the lab is test-runner's: another researcher's study is not in it
        assert [r[0] for r in conn.execute("SELECT DISTINCT study FROM dp_grants")] == ["delay"]
    with pytest.raises(Exception, match="must lie outside the workspace"):
        prepare_lab_home(project.ws, project.ws.root / "lab", "rita")
    with pytest.raises(Exception, match="another researcher's lab home"):  # its ledger and history are hers
        prepare_lab_home(project.ws, tmp_path / "lab", "rob")
    # A notebooks folder the lab may write must not hold what the host runs or guards.
    with pytest.raises(Exception, match="it holds the workspace"):
        check_notebooks_folder(project.ws, project.ws.root.parent)
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    with pytest.raises(Exception, match="a git repository's top folder"):
        check_notebooks_folder(project.ws, tmp_path / "repo")


def test_a_lab_is_started_by_a_researcher_only(project: Project, tmp_path: Path) -> None:
    from rich.console import Console
    from tests.conftest import MEMBER, people

    from research_kit.actions import confinement
    from research_kit.core.errors import PolicyRefusal

    people(project.ws)
    with pytest.raises(PolicyRefusal, match="starting a lab needs the researcher role"):
        confinement.lab(
            project.ws, actor=MEMBER, home=tmp_path / "lab", port=1, notebooks=tmp_path, console=Console()
        )  # fmt: skip
    assert not (tmp_path / "lab").exists()


ESCAPES = """
import json, os, socket
tried = {}
def attempt(name, action):
    try:
        tried[name] = {"escaped": True, "got": str(action())[:100]}
    except Exception as exc:
        tried[name] = {"escaped": False, "error": type(exc).__name__}
attempt("read key", lambda: open(KEY).read())
attempt("list workspace", lambda: os.listdir(WS))
attempt("loopback socket", lambda: socket.create_connection(("127.0.0.1", PORT), timeout=3))
attempt("other processes", lambda: [p for p in os.listdir("/proc") if p.isdigit() and int(p) > 50] or 1 / 0)
# Symlinks the server would follow if it ran outside: to the key and to the workspace's catalog.
os.symlink(KEY, "leak-key.txt")
os.symlink(WS + "/catalog.sqlite", "leak-catalog")
print(json.dumps(tried))
"""


def test_lab_server_and_kernels_run_sandboxed_on_the_twin(project: Project, tmp_path: Path, key_file: Path) -> None:
    patients = publish_twin(project)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    sign_in(project.ws, **{"test-runner": "researcher"})  # a lab is a signed-in researcher's
    port = free_port()
    env = {**os.environ, "RESEARCH_KIT_HOME": str(project.ws.root), "RESEARCH_KIT_EXTRACT": "e1",
           "RESEARCH_KIT_TIER": "real"}  # fmt: skip
    lab = subprocess.Popen(
        [sys.executable, "-m", "research_kit", "lab", "--port", str(port), "--notebooks", str(notebooks),
         "--home", str(tmp_path / "lab")],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        assert lab.stdout is not None
        address = ""
        for line in lab.stdout:
            if "token=" in line:
                address = line.split()[1]
                break
        found = re.search(r"token=([\w-]+)", address)
        assert found, f"no address printed: {address!r} {lab.stderr.read() if lab.stderr else ''}"
        token = found.group(1)
        started = [json.loads(line) for line in project.ws.audit_path.read_text().splitlines()]
        assert any(e["action"] == "lab.start" and e["actor"] == "test-runner" for e in started)
        base = f"http://127.0.0.1:{port}"
        kernel = _post(f"{base}/api/kernels?token={token}", deadline=time.monotonic() + 60)
        probe = run_in_kernel(port, token, kernel["id"], PROBE)
        escapes = run_in_kernel(
            port, token, kernel["id"],
            f"KEY, WS, PORT = {str(key_file)!r}, {str(project.ws.root)!r}, {listener.getsockname()[1]}\n" + ESCAPES,
        )  # fmt: skip
        served = {name: _status(f"{base}/files/{name}?token={token}") for name in ("leak-key.txt", "leak-catalog")}
        # Swap the server's socket for a link to a socket of the host: the forwarder must not follow it.
        host_socket = socket.socket(socket.AF_UNIX)
        host_socket.bind(str(tmp_path / "host.sock"))
        host_socket.listen()
        host_socket.settimeout(3)
        swap = "import os\nos.symlink(HOST, '/lab/run/swap')\nos.replace('/lab/run/swap', '/lab/run/jupyter.sock')"
        run_in_kernel(port, token, kernel["id"], f"HOST = {str(tmp_path / 'host.sock')!r}\n" + swap)
        after_swap = _status(f"{base}/api/status?token={token}")
        try:
            host_socket.accept()[0].close()
            reached = True
        except TimeoutError:
            reached = False
        host_socket.close()
    finally:
        listener.close()
        processes = process_tree(lab.pid)  # research-kit lab, the sandbox, JupyterLab, the kernel
        lab.terminate()  # SIGTERM, as a user's `kill` or a service manager stops it
        out, err = lab.communicate(timeout=60)  # waits, and closes the pipes
    assert lab.returncode == 143, out + err
    assert left_running(processes) == []
    seen = json.loads(probe)
    assert seen["twin"] == patients
    assert "no extract registered yet" in seen["real"]
    hidden = [str(project.ws.root), str(key_file), "extracts"]
    leaks = {k: v for k, v in seen["env"].items() if any(h in v for h in hidden)}
    assert leaks == {}
    assert seen["env"]["RESEARCH_KIT_HOME"] == "/lab/home"
    assert "RESEARCH_KIT_KEY_FILE" not in seen["env"]
    assert "RESEARCH_KIT_EXTRACT" not in seen["env"]
    tried = json.loads(escapes)
    assert {name: r["escaped"] for name, r in tried.items()} == dict.fromkeys(tried, False), tried
    # The server runs in the same sandbox: the symlinks lead nowhere it can read (refused or not found).
    assert set(served.values()) <= {403, 404}, served
    assert (notebooks / "leak-key.txt").is_symlink()  # planted in the notebooks folder, harmless outside too
    assert after_swap == 0  # the forwarder closed the connection
    assert reached is False


def run_in_kernel(port: int, token: str, kernel_id: str, code: str) -> str:
    """Run ``code`` in a lab kernel through the server's websocket (as the browser does); its printed output."""
    import asyncio
    import uuid

    from tornado.websocket import websocket_connect

    async def run() -> str:
        url = f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?token={token}"
        conn = await websocket_connect(url)
        msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": session,
                  "version": "5.3", "date": ""}  # fmt: skip
        content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell",
                   "buffers": []}  # fmt: skip
        out: list[str] = []
        try:
            await conn.write_message(json.dumps(message))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(conn.read_message(), timeout=120)
                assert raw is not None, "the kernel's channel closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    raise AssertionError(f"{msg['content']['ename']}: {msg['content']['evalue']}")
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    break
        finally:
            conn.close()
            # The closing handshake: the server's close frame ends the stream, and the socket is closed.
            while await asyncio.wait_for(conn.read_message(), timeout=30) is not None:
                pass
        return "".join(out)

    return asyncio.run(run())


def _status(url: str) -> int:
    """The HTTP status, or 0 when the connection closed without an answer."""
    try:
        with urllib.request.urlopen(url, timeout=30) as got:
            return int(got.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, ConnectionError):
        return 0


def _post(url: str, *, deadline: float) -> dict[str, str]:
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=30) as got:
                answer: dict[str, str] = json.loads(got.read())
                return answer
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_links_planted_in_the_lab_home_are_not_followed_when_it_is_prepared_again(
    project: Project, tmp_path: Path
) -> None:
    publish_twin(project)
    lab = prepare_lab_home(project.ws, tmp_path / "lab", "rita")
    target = tmp_path / "host-file"
    target.write_text("the host's own")
    lab.policy_path.unlink()
    lab.policy_path.symlink_to(target)  # as code in the lab could do
    prepare_lab_home(project.ws, tmp_path / "lab", "rita")
    assert target.read_text() == "the host's own"
    assert not lab.policy_path.is_symlink()
