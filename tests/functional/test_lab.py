"""``research-kit lab``: JupyterLab on the synthetic twin, whose kernels hold no path to an extract or the key.

The test starts the command as a researcher would, asks the server for a kernel over its REST API, connects
to that kernel and runs code in it: what the kernel's environment holds, and what ``rk.load()`` gives.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import Project
from tests.functional.webapp import free_port

from research_kit.extracts import get_extract
from research_kit.lab import kernel_environment, prepare_lab_home

PROBE = """
import json, os
import research_kit as rk
from research_kit.errors import MissingData
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
    from research_kit import audit
    from research_kit.dp import ledger

    publish_twin(project)
    with audit.acting("carla"):
        ledger.grant(project.ws, "delay", 0.3)
    lab = prepare_lab_home(project.ws, tmp_path / "lab")
    assert sorted(p.name for p in lab.root.iterdir() if p.suffix not in (".sqlite-wal", ".sqlite-shm")) == [
        "audit.jsonl",
        "catalog.sqlite",
        "research-kit.toml",
        "synthetic",
        "tmp",
    ]
    assert (lab.synthetic_dir / "e2" / "patients.parquet").is_file()
    assert ledger.balance(lab, "delay", "sandbox").granted == ledger.balance(project.ws, "delay").granted
    env = kernel_environment(project.ws, lab, {"RESEARCH_KIT_KEY_FILE": "/k", "OTHER": str(project.ws.root / "x"),
                                               "PATH": "/usr/bin"})  # fmt: skip
    assert env == {"PATH": "/usr/bin", "RESEARCH_KIT_HOME": str(lab.root), "RESEARCH_KIT_TIER": "synthetic"}
    with pytest.raises(Exception, match="must lie outside the workspace"):
        prepare_lab_home(project.ws, project.ws.root / "lab")


def test_lab_kernels_read_the_twin_and_cannot_reach_the_extract_or_key(
    project: Project, tmp_path: Path, key_file: Path
) -> None:
    from jupyter_client import BlockingKernelClient

    patients = publish_twin(project)
    port, runtime = free_port(), tmp_path / "runtime"
    env = {**os.environ, "RESEARCH_KIT_HOME": str(project.ws.root), "JUPYTER_RUNTIME_DIR": str(runtime),
           "RESEARCH_KIT_EXTRACT": "e1", "RESEARCH_KIT_TIER": "real"}  # fmt: skip
    lab = subprocess.Popen(
        [sys.executable, "-m", "research_kit", "lab", "--port", str(port), "--notebooks", str(tmp_path),
         "--home", str(tmp_path / "lab")],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert lab.stdout is not None
        address = ""
        for line in lab.stdout:
            if "token=" in line:
                address = line.split()[1]
                break
        found = re.search(r"token=([\w-]+)", address)
        assert found, f"no address printed: {address!r}"
        token = found.group(1)
        base = f"http://127.0.0.1:{port}"
        kernel = _post(f"{base}/api/kernels?token={token}", deadline=time.monotonic() + 60)
        connection = runtime / f"kernel-{kernel['id']}.json"
        client = BlockingKernelClient(connection_file=str(connection))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            outputs: list[str] = []
            reply = client.execute_interactive(PROBE, timeout=120, output_hook=lambda m: outputs.append(
                m["content"].get("text", "")) if m["msg_type"] == "stream" else None)  # fmt: skip
            assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            client.stop_channels()
        seen = json.loads("".join(outputs))
    finally:
        lab.terminate()
        lab.communicate(timeout=30)  # waits, and closes the pipes
    assert seen["twin"] == patients
    assert "no extract registered yet" in seen["real"]
    hidden = [str(project.ws.root), str(key_file), "extracts"]
    leaks = {k: v for k, v in seen["env"].items() if any(h in v for h in hidden)}
    assert leaks == {}
    assert seen["env"]["RESEARCH_KIT_HOME"] == str((tmp_path / "lab").resolve())
    assert "RESEARCH_KIT_KEY_FILE" not in seen["env"]
    assert "RESEARCH_KIT_EXTRACT" not in seen["env"]


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
