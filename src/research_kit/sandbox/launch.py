"""Start one confined process: close inherited files, apply resource limits, then exec bwrap (or the command).

Run as ``python -I -S launch.py PLAN [CONNECTION_FILE]`` by whoever starts
researcher code (a Jupyter kernel manager, the lab, a test). It imports only
the standard library and nothing of research-kit, so it starts in a few
milliseconds and nothing of the caller's state reaches the sandbox:

- every file descriptor but 0, 1 and 2 is closed (Jupyter starts kernels with
  ``close_fds=False``: the runner's catalog connection would otherwise be
  inherited);
- CPU time, file size and core dumps are limited with ``setrlimit`` (inherited
  by every process inside), and the process joins a cgroup when one is named;
- bwrap is executed with an empty environment (its own PID 1 inside the
  namespace keeps the environment it was started with, readable at
  ``/proc/1/environ``) and its arguments on a memfd (``--args``), so that
  ``/proc/1/cmdline`` inside names no host path.

The plan (JSON, written by :mod:`research_kit.sandbox.confine`) holds
``argv`` (``{connection_file}`` is replaced by the second argument), ``env``
(the command's whole environment), ``bwrap`` and ``bwrap_args`` (absent when
the mode is not bwrap), ``rlimits`` and ``cgroup``.
"""

import json
import os
import resource
import sys

_RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
    "nofile": resource.RLIMIT_NOFILE,
}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        plan = json.load(fh)
    connection_file = sys.argv[2] if len(sys.argv) > 2 else ""
    argv = [a.replace("{connection_file}", connection_file) for a in plan["argv"]]
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)
    for name, (soft, hard) in plan.get("rlimits", {}).items():
        resource.setrlimit(_RLIMITS[name], (soft, hard))
    cgroup = plan.get("cgroup")
    if cgroup:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    if not plan.get("bwrap"):
        os.execve(argv[0], argv, plan["env"])
    args = list(plan["bwrap_args"])
    args += ["--clearenv"] + [x for name, value in sorted(plan["env"].items()) for x in ("--setenv", name, value)]
    fd = os.memfd_create("bwrap-args", 0)
    os.write(fd, b"".join(a.encode() + b"\0" for a in args))
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    os.execve(plan["bwrap"], ["bwrap", "--args", str(fd), *argv], {})


if __name__ == "__main__":
    main()
