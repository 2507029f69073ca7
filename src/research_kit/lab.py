"""``research-kit lab``: JupyterLab for researchers, on the synthetic twin and nothing else.

The kernels of this JupyterLab never see the registry's workspace. They get a
workspace of their own, the *lab home* (default ``.lab/`` in the current
folder), made from the real one at each start:

- the published synthetic twins (``synthetic/ID/``: the shareable tier) and
  a copy of the policy;
- its own catalog and audit log, whose sandbox ledger charges ``rk.dp`` on
  the twin as the real ledger would (each study's grants are copied in, so
  a notebook runs out of budget on the twin where it would on the extract);
- no extract, no raw export, no quarantine, no report, no key.

The server (and so every kernel) starts with an environment from which every
``RESEARCH_KIT_*`` variable is removed, then ``RESEARCH_KIT_HOME`` set to the
lab home and ``RESEARCH_KIT_TIER=synthetic``; any variable naming the real
workspace or the key file is dropped too. ``rk.load()`` in a notebook reads
the twin; asked for the real tier, it finds no extract. The runner
(``research-kit run``) is the only way a notebook meets the real extract.

JupyterLab listens on 127.0.0.1 with a random token, printed once in the
address to open; its terminals are off, and hidden folders (``.workspace``,
``.secrets``) are not served. This keeps honest researchers on the twin; it
is not a wall against code run as the same operating-system user, which can
read whatever that user can: a deployment runs the lab as an account that
cannot read the workspace or the key.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from research_kit.catalog import transaction
from research_kit.errors import BadInput, MissingData
from research_kit.pseudonymise.keys import key_path
from research_kit.tiers import TIER_ENV, published_twins
from research_kit.workspace import HOME_ENV, Workspace, init_workspace

DEFAULT_LAB_HOME = ".lab"
ENV_PREFIX = "RESEARCH_KIT_"


def prepare_lab_home(ws: Workspace, home: Path) -> Workspace:
    """Make (or refresh) the lab home from ``ws``: its twins, its policy, its grants; nothing else of it."""
    home = home.resolve()
    real = ws.root.resolve()
    if home == real or home.is_relative_to(real) or real.is_relative_to(home):
        raise BadInput(f"--home {home}: the lab home must lie outside the workspace {real}")
    twins = published_twins(ws)
    if not twins:
        raise MissingData(
            "no synthetic twin published yet: researchers' notebooks run on one (the steward runs "
            "'research-kit synth EXTRACT')"
        )
    lab, _ = init_workspace(home)
    shutil.copyfile(ws.policy_path, lab.policy_path)
    lab.synthetic_dir.mkdir(mode=0o700, exist_ok=True)
    published = {twin_id for twin_id, _ in twins}
    for stale in lab.synthetic_dir.iterdir():
        if stale.is_dir() and stale.name not in published:
            shutil.rmtree(stale)
    for twin_id in published:
        _copy_twin(ws.synthetic_dir / twin_id, lab.synthetic_dir / twin_id)
    _mirror_grants(ws, lab)
    for folder in (lab.raw_dir, lab.extracts_dir, lab.quarantine_dir):  # created empty by init: not used here
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return lab


def _copy_twin(source: Path, target: Path) -> None:
    """Replace ``target`` by a copy of the published twin ``source`` (through a temporary folder)."""
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def _mirror_grants(ws: Workspace, lab: Workspace) -> None:
    with ws.catalog() as conn:
        grants = conn.execute(
            "SELECT study, picorho, granted_by, granted_at, note FROM dp_grants WHERE tier = 'real' ORDER BY id"
        ).fetchall()
    with lab.catalog() as conn, transaction(conn):
        conn.execute("DELETE FROM dp_grants WHERE tier = 'real'")
        conn.executemany(
            "INSERT INTO dp_grants (study, tier, picorho, granted_by, granted_at, note) VALUES (?, 'real', ?, ?, ?, ?)",
            [tuple(g) for g in grants],
        )


def kernel_environment(ws: Workspace, lab: Workspace, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without research-kit's settings or any mention of the workspace or key; the lab's own added."""
    hidden = [str(ws.root.resolve()), str(key_path().resolve())]
    env = {
        name: value
        for name, value in base.items()
        if not name.startswith(ENV_PREFIX) and not any(h in value for h in hidden)
    }
    env[HOME_ENV] = str(lab.root)
    env[TIER_ENV] = "synthetic"
    return env


def run_lab(
    ws: Workspace, *, home: Path, port: int, notebooks: Path, console: Console, open_browser: bool = False
) -> None:
    """Prepare the lab home and run JupyterLab on loopback until Ctrl-C (or the server stops)."""
    if not notebooks.is_dir():
        raise MissingData(f"{notebooks}: no such folder of notebooks (give --notebooks DIR)")
    lab = prepare_lab_home(ws, home)
    if lab.root.resolve().is_relative_to(notebooks.resolve()):
        console.print(f"note: the lab home {lab.root} is inside {notebooks}: keep it out of git (.gitignore)")
    token = secrets.token_urlsafe(24)
    command = [
        sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}",
        "--ServerApp.open_browser=" + ("True" if open_browser else "False"),
        "--ServerApp.terminals_enabled=False",  # no shell beside the notebooks
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI run as root; Jupyter refuses it unless told
    twins = ", ".join(twin_id for twin_id, _ in published_twins(lab))
    console.print(f"JupyterLab on the synthetic twin ({escape(twins)}); notebooks from {escape(str(notebooks))}")
    console.print(f"lab home {escape(str(lab.root))}: twins, policy and sandbox ledger only; no extract, no key")
    console.print(f"open http://127.0.0.1:{port}/lab?token={token}   (Ctrl-C stops it)", soft_wrap=True)
    console.file.flush()  # the address must reach a pipe or a log now, not when the server stops
    server = subprocess.Popen(
        command,
        env=kernel_environment(ws, lab, os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, stderr = server.communicate()
    except KeyboardInterrupt:
        server.terminate()
        server.wait(timeout=30)
        raise
    if server.returncode not in (0, -15):
        lines = (stderr or b"").decode("utf-8", "replace").strip().splitlines()
        last = next((line for line in reversed(lines) if "[C " in line or "Error" in line), lines[-1] if lines else "")
        raise BadInput(f"JupyterLab stopped (exit {server.returncode}): {last.strip() or 'no message'}")
