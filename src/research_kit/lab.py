"""``research-kit lab``: JupyterLab for researchers, on the synthetic twin and nothing else.

The kernels of this JupyterLab never see the registry's workspace. They get a
workspace of their own, the *lab home* (default ``.lab/`` in the current
folder), made from the real one at each start:

- the published synthetic twins (``synthetic/ID/``: the shareable tier),
  DP twins (``synthetic/ID@dp/``) among them, and a copy of the policy;
- its own catalog and audit log, whose sandbox ledger charges ``rk.dp`` on
  the twin as the real ledger would (each study's grants are copied in, so
  a notebook runs out of budget on the twin where it would on the extract);
- no extract, no raw export, no quarantine, no report, no key.

The server (and so every kernel) starts with an environment from which every
``RESEARCH_KIT_*`` variable is removed, then ``RESEARCH_KIT_HOME`` set to the
lab home and ``RESEARCH_KIT_TIER=synthetic`` (and ``RESEARCH_KIT_TWIN`` when ``--twin`` names
the twin to read); any variable naming the real workspace or the key file is
dropped too. ``rk.load()`` in a notebook reads the twin (the newest default
one, or the one ``--twin dp|ID`` chose); asked for the real tier, it finds no extract. The runner
(``research-kit run``) is the only way a notebook meets the real extract.

The whole lab runs in the sandbox (:mod:`research_kit.sandbox`), the
server as well as its kernels: a server outside would serve any symlink a
kernel drops into the notebooks folder. Inside it sees the Python
environment, the lab home (writable; its published twins read-only) at
``/lab/home`` and the notebooks folder (writable) at ``/lab/notebooks``;
nothing else of the machine, no network, no other process. The server
listens on a Unix socket in a folder bound out of the sandbox, and
``research-kit lab`` forwards ``127.0.0.1:PORT`` to it; the address it
prints carries a random token. Terminals are off. The notebooks folder may
not hold the workspace, the key, the Python environment or a git
repository's own folder (a kernel could plant a hook or code the host runs).

Stopping. SIGINT (Ctrl-C) and SIGTERM are caught while the lab runs: the
server and every process under it, its kernels included (each in a session
of its own, so not in the server's process group), get SIGTERM, those still
running :data:`GRACE_SECONDS` later (or at a second signal) get SIGKILL, and
``research-kit lab`` waits for them, removes its socket folder and exits with
128 + the signal's number: 130 for SIGINT, 143 for SIGTERM. The tree is read
before it is signalled, so a kernel whose server ended first is still
stopped. Should ``research-kit lab`` itself be killed (SIGKILL, OOM), the
server gets SIGKILL from the kernel (``PR_SET_PDEATHSIG``, set by a small exec
wrapper rather than a ``preexec_fn``, which is unsafe once threads run);
under bwrap the sandbox's PID namespace ends with it, kernels included, and
without bwrap each kernel ends itself when its server is gone (ipykernel
watches ``JPY_PARENT_PID``). :func:`stop_tree` and :class:`StopSignals` serve
``research-kit serve`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from research_kit.core import permits
from research_kit.core.audit import ACTOR_ENV
from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.core.workspace import HOME_ENV, Workspace, init_workspace
from research_kit.pseudonymise.keys import key_path
from research_kit.sandbox.confine import Sandbox, python_folders
from research_kit.sandbox.limits import Limits
from research_kit.tiers import TIER_ENV, TWIN_ENV, published_twins, twin_label, twin_source

if TYPE_CHECKING:
    import psutil

    from research_kit.sandbox.limits import Watcher

DEFAULT_LAB_HOME = ".lab"
OWNER_FILE = "owner"  # the researcher whose lab home it is: another's lab never reuses it


def prepare_lab_home(ws: Workspace, home: Path, owner: str) -> Workspace:
    """Make (or refresh) ``owner``'s lab home from ``ws``: its twins, its policy, the grants of the studies
    ``owner`` owns; nothing else of it."""
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
    _drop_planted_links(home, ws)
    held = home / OWNER_FILE
    if held.is_file() and held.read_text(encoding="utf-8").strip() != owner:
        raise BadInput(f"--home {home}: another researcher's lab home; use a folder of your own")
    lab, _ = init_workspace(home)
    held.write_text(owner + "\n", encoding="utf-8")
    shutil.copyfile(ws.policy_path, lab.policy_path)
    lab.synthetic_dir.mkdir(mode=0o700, exist_ok=True)
    published = {twin_id for twin_id, _ in twins}
    for stale in lab.synthetic_dir.iterdir():
        if stale.is_dir() and stale.name not in published:
            shutil.rmtree(stale)
    for twin_id in published:
        _copy_twin(ws.synthetic_dir / twin_id, lab.synthetic_dir / twin_id)
    _mirror_grants(ws, lab, owner)
    for folder in (lab.raw_dir, lab.extracts_dir, lab.quarantine_dir):  # created empty by init: not used here
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return lab


def _drop_planted_links(home: Path, ws: Workspace) -> None:
    """Remove symlinks from the lab home's top level: code in the lab can plant them, and this process (outside,
    as the workspace's owner) would follow them when it writes the policy, the catalog or the audit log."""
    if home.is_symlink():
        raise BadInput(f"--home {home}: a symbolic link; give the folder itself")
    if home.is_dir():
        for entry in home.iterdir():
            if entry.is_symlink():
                entry.unlink()
                if entry.name == ws.policy_path.name:
                    shutil.copyfile(ws.policy_path, entry)  # still a lab home


def _copy_twin(source: Path, target: Path) -> None:
    """Replace ``target`` by a copy of the published twin ``source`` (through a temporary folder)."""
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def _mirror_grants(ws: Workspace, lab: Workspace, owner: str) -> None:
    """The sandbox ledger charges the studies whose data permit in force names the lab's user as the real one
    would; other studies are absent."""
    with ws.catalog() as conn:
        grants = conn.execute(
            "SELECT g.study, g.picorho, g.granted_by, g.granted_at, g.note FROM dp_grants g "
            "WHERE g.tier = 'real' ORDER BY g.id"
        ).fetchall()
        # The studies whose permit in force names the lab's user: an ended or revoked permit lends no budget.
        mine = {p.study for p in permits.listed(conn) if p.in_force() and owner in p.users} - {permits.REGISTRY_TWIN}
    grants = [g for g in grants if g["study"] in mine]
    with lab.catalog() as conn, transaction(conn):
        conn.execute("DELETE FROM dp_grants WHERE tier = 'real'")
        conn.executemany(
            "INSERT INTO dp_grants (study, tier, picorho, granted_by, granted_at, note) VALUES (?, 'real', ?, ?, ?, ?)",
            [tuple(g) for g in grants],
        )


LAB_HOME = "/lab/home"
LAB_NOTEBOOKS = "/lab/notebooks"
LAB_RUN = "/lab/run"
SOCKET = "jupyter.sock"
YEAR = 365 * 24 * 3600


def check_notebooks_folder(ws: Workspace, notebooks: Path) -> Path:
    """The notebooks folder, refused when it holds (or lies in) what a kernel must never write to or read."""
    if not notebooks.is_dir():
        raise MissingData(f"{notebooks}: no such folder of notebooks (give --notebooks DIR)")
    folder = notebooks.resolve()
    guarded = [("the workspace", ws.root.resolve()), ("the key", key_path().resolve())]
    guarded += [("the Python environment", p) for p in python_folders()]
    for what, path in guarded:
        if path.is_relative_to(folder) or folder.is_relative_to(path):
            raise BadInput(f"--notebooks {notebooks}: it holds {what} ({path}); give the folder of notebooks itself")
    if (folder / ".git").exists():
        raise BadInput(f"--notebooks {notebooks}: a git repository's top folder (a kernel could plant a hook there)")
    return folder


def lab_sandbox(ws: Workspace, lab: Workspace, notebooks: Path, run_dir: Path) -> Sandbox:
    """The lab server's sandbox: lab home and notebooks writable, published twins read-only, a socket folder."""
    from research_kit.model.codes import cache_file, load_code_systems
    from research_kit.sandbox.modes import confinement

    confined = confinement(ws)
    runner = ws.policy().runner
    # A lab runs for a working day and more: memory, processes and the home's size are limited, not time.
    limits = Limits.from_policy(runner)
    limits = Limits(limits.memory_bytes, YEAR, YEAR, limits.work_bytes, limits.max_processes)
    box = confined.sandbox(limits)
    box.add("home", lab.root, LAB_HOME, writable=True)
    box.add("twins", lab.synthetic_dir, f"{LAB_HOME}/synthetic")
    box.add("notebooks", notebooks, LAB_NOTEBOOKS, writable=True)
    box.add("run", run_dir, LAB_RUN, writable=True)
    codes = cache_file()
    if not codes.is_file():
        load_code_systems()
    box.add("codes", codes, f"/lab/cache/{codes.name}")
    box.cwd = "notebooks"
    if box.mode != "bwrap":
        box.scratch = str(run_dir)
    return box


def run_lab(
    ws: Workspace,
    *,
    owner: str,
    home: Path,
    port: int,
    notebooks: Path,
    console: Console,
    open_browser: bool = False,
    twin: str | None = None,
) -> None:
    """Prepare ``owner``'s lab home and run JupyterLab in its sandbox, reached on loopback, until Ctrl-C or SIGTERM:
    then the server and every process under it are stopped, and this raises ``SystemExit(130 or 143)``.

    ``twin`` (a kind, ``"dp"``, or a twin's id) is the twin ``rk.load()`` reads; by default the newest default
    twin."""
    from research_kit.sandbox.limits import Watcher

    folder = check_notebooks_folder(ws, notebooks)
    lab = prepare_lab_home(ws, home, owner)
    reads = twin_source(lab, twin)  # refuses, in one line, a twin that is not published
    with StopSignals() as stopping:
        run_dir = Path(tempfile.mkdtemp(prefix="rk-lab-"))
        box = lab_sandbox(ws, lab, folder, run_dir)
        token = secrets.token_urlsafe(24)
        socket_path = run_dir / SOCKET
        env = box.environment(lab_environment(box.path("home"), box.path("codes"), owner, twin))
        env["JUPYTER_RUNTIME_DIR"] = f"{env['TMPDIR']}/jupyter-runtime"  # kernels' sockets stay in the private /tmp
        command = [
            sys.executable, "-m", "jupyterlab", f"--ServerApp.sock={box.path('run')}/{SOCKET}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={box.path('notebooks')}",
            "--ServerApp.open_browser=False", "--ServerApp.terminals_enabled=False",  # no shell beside the notebooks
            "--KernelManager.transport=ipc",
        ]  # fmt: skip
        if box.mode != "bwrap" and hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # unconfined in a container run as root; Jupyter refuses it unless told
        plan = box.write_plan(run_dir.parent / f"{run_dir.name}-plan.json", command, env)
        console.print(f"{escape(startup_line(lab, reads.name))}; notebooks from {escape(str(folder))}")
        console.print(f"sandbox: {box.mode}; lab home {escape(str(lab.root))}: twins, policy and sandbox ledger only")
        server = subprocess.Popen(
            die_with_parent(box.command(plan)), env={}, cwd=folder, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        watcher = Watcher(box.limits, lab.root, also=(folder, run_dir))
        watcher.attach(server.pid)
        try:
            deadline = time.monotonic() + 120
            while not socket_path.exists() and not stopping.signum:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise BadInput(f"JupyterLab did not start (exit {server.poll()}): {_last_words(server)}")
                time.sleep(0.2)
            if not stopping.signum:
                _forward_until_stopped(server, port, token, socket_path, console, open_browser, watcher, stopping)
        finally:
            watcher.stop()
            stop_tree(server.pid, hurry=lambda: stopping.count > 1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)  # it has ended (SIGKILL at the latest): collect its exit status
            if server.stderr is not None:
                server.stderr.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            plan.unlink(missing_ok=True)
    if stopping.signum:
        name = signal.Signals(stopping.signum).name
        console.print(f"lab stopped ({name}): JupyterLab and its kernels have ended")
        raise SystemExit(stopping.exit_code)


def lab_environment(home: str, codes: str, owner: str, twin: str | None) -> dict[str, str]:
    """The variables the lab's server and kernels get beyond the sandbox's own: the lab home, the synthetic
    tier, the owner, the code lists and, with ``--twin``, the twin ``rk.load()`` reads."""
    env = {
        HOME_ENV: home,
        TIER_ENV: "synthetic",
        ACTOR_ENV: owner,  # the lab's sandbox ledger records its owner's spending
        "RESEARCH_KIT_CACHE": str(Path(codes).parent),
    }
    if twin:
        env[TWIN_ENV] = twin
    return env


def startup_line(lab: Workspace, reads: str) -> str:
    """``JupyterLab on the synthetic twins demo (default), demo@dp (DP: AIM, epsilon 4); rk.load() reads demo``."""
    twins = ", ".join(twin_label(twin_id, manifest) for twin_id, manifest in published_twins(lab))
    return f"JupyterLab on the synthetic twins {twins}; rk.load() reads {reads.removeprefix('twin:')}"


def _forward_until_stopped(
    server: subprocess.Popen[bytes],
    port: int,
    token: str,
    socket_path: Path,
    console: Console,
    open_browser: bool,
    watcher: Watcher,
    stopping: StopSignals,
) -> None:
    """Forward ``127.0.0.1:PORT`` to the running server until it ends, the watcher stops it, or a signal comes."""
    from research_kit.sandbox.forward import forward
    from research_kit.sandbox.limits import in_tree

    console.print(f"open http://127.0.0.1:{port}/lab?token={token}   (Ctrl-C stops it)", soft_wrap=True)
    console.file.flush()  # the address must reach a pipe or a log now, not when the server stops
    if open_browser:
        import webbrowser

        webbrowser.open(f"http://127.0.0.1:{port}/lab?token={token}")
    try:
        asyncio.run(
            forward(
                port,
                socket_path,
                stop=lambda: bool(stopping.signum) or server.poll() is not None or bool(watcher.reason),
                peer_ok=lambda pid: in_tree(pid, server.pid),
            )
        )
    except OSError as exc:
        raise BadInput(f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror or exc})") from None
    if stopping.signum:
        return
    if watcher.reason:
        raise PolicyRefusal(f"the lab was stopped: it exceeded {watcher.reason}")
    if server.returncode not in (0, -15):
        raise BadInput(f"JupyterLab stopped (exit {server.returncode}): {_last_words(server)}")


GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when a lab (or serve) stops the processes under it
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While entered (in the main thread), SIGINT and SIGTERM are recorded instead of acted on: the code checks
    :attr:`signum`, stops what it started and exits with :attr:`exit_code` (128 + the first signal's number)."""

    def __init__(self) -> None:
        self.signum = 0  # the first signal received
        self.count = 0  # signals received: a second one cuts the grace period short
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        self.count += 1

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 0

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# Run as ``python -I -S -c _DIE_WITH_PARENT PARENT_PID COMMAND...``: asks the kernel for SIGKILL when the parent
# ends (kept across exec), ends at once if the parent is already gone, then execs COMMAND in its own place.
_DIE_WITH_PARENT = """\
import ctypes, os, sys
ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
if os.getppid() != int(sys.argv[1]):
    os._exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def die_with_parent(command: list[str]) -> list[str]:
    """``command`` run so that it gets SIGKILL when this process ends, however it ends (Linux; elsewhere as is).

    An exec wrapper, not a ``preexec_fn`` (unsafe in a process with threads); the signal follows the process
    across exec, so the wrapper leaves nothing of itself behind."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]


def stop_tree(
    pid: int | None = None, *, grace: float = GRACE_SECONDS, hurry: Callable[[], bool] = lambda: False
) -> None:
    """Stop ``pid`` and every process under it (``None``: every process under this one) and wait until they ended.

    The tree is read first and read again while it ends, so a process whose parent ends first (and which is
    then no longer under it) is still stopped, and one started meanwhile too: SIGTERM to each, SIGKILL to those
    still running after ``grace`` seconds (or once ``hurry()`` is true). Reaps nothing: the parent of each
    (``subprocess.Popen``, asyncio) waits for its own, and an ended process counts as ended while a zombie."""
    import psutil

    def tree() -> list[psutil.Process]:
        try:
            root = psutil.Process(pid) if pid is not None else None
            return [root, *root.children(recursive=True)] if root else psutil.Process().children(recursive=True)
        except psutil.Error:
            return []

    seen: dict[psutil.Process, None] = {}
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not hurry():
        fresh = [p for p in tree() if p not in seen]
        _send(fresh, signal.SIGTERM)
        seen |= dict.fromkeys(fresh)
        if not still_running(seen):
            return
        time.sleep(0.1)
    seen |= dict.fromkeys(tree())
    _send(still_running(seen), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while still_running(seen) and time.monotonic() < deadline:
        time.sleep(0.05)


def still_running(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` still running (a zombie has ended: only its parent's wait is missing)."""
    import psutil

    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            alive.append(proc)
    return alive


def _send(procs: list[psutil.Process], sig: int) -> None:
    import psutil

    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            continue


def _last_words(server: subprocess.Popen[bytes]) -> str:
    if server.poll() is None or server.stderr is None:
        return "no message"
    lines = server.stderr.read().decode("utf-8", "replace").strip().splitlines()
    last = next((line for line in reversed(lines) if "[C " in line or "Error" in line), lines[-1] if lines else "")
    return last.strip() or "no message"
