"""The service mode's wire: what a command-line client sends ``research-kit serve``, and which commands it may.

In the service mode (``[auth].mode = "service"``) the workspace belongs to a
service account and people reach it only through ``research-kit serve``: the
web pages, and a JSON API under :data:`API` that takes the session token of
``research-kit login`` as its credential (``Authorization: Bearer TOKEN``).
A command line given ``RESEARCH_KIT_URL`` is a client: ``login`` and
``logout`` talk to the API, and each command of :data:`REMOTE_COMMANDS` is
sent to the server, which runs it there as the session's user (in a process
of its own, the token in :data:`SESSION_ENV`) and sends back its output and
exit code. ``run PIPELINE`` sends the pipeline file and the notebooks it
names; the server keeps them in ``projects/USER/`` of the workspace and runs
them from there. The client never opens the workspace's files.
"""

from __future__ import annotations

URL_ENV = "RESEARCH_KIT_URL"  # the server a command-line client talks to, e.g. http://127.0.0.1:8765
SESSION_ENV = "RESEARCH_KIT_SESSION"  # the token a command the server runs for a client acts with (a bearer
# credential like the token file: whoever holds a live token acts as its user, and nobody else)
API = "/api/v1"

# What a client runs on the server: every researcher's, committee member's and steward's action that reads
# nothing from the client's disk. 'run' is sent with its project (the pipeline file and its notebooks), which
# the server keeps in the user's own projects folder. Not sent: init, key, simulate, ingest, synth (the
# steward works on the server), lab and pipeline, serve, demo.
REMOTE_COMMANDS = frozenset(
    {"budget", "query", "outputs", "review", "release", "users", "audit", "extracts", "risk", "rerun", "sandbox"}
)
RUN = "run"
# run's options a client may send (True: it takes a value). Not --executor, --workers or --scheduler: where the
# server's processes connect and how many it starts are the operator's choice, never a client's.
RUN_OPTIONS = {"--extract": True, "--action": True, "--force": False}
SERVER_ONLY_OPTIONS = ("--executor", "--workers", "--scheduler")  # refused in any command a client sends
PROJECTS = "projects"  # the workspace's folder of each user's uploaded projects: projects/USER/...
MAX_ARGS = 64
MAX_ARG_CHARS = 4096
MAX_STDIN_CHARS = 65536
MAX_PROJECT_FILES = 200
MAX_PROJECT_BYTES = 20 * 1024 * 1024
MAX_BODY_BYTES = 256 * 1024  # a request body of the API, but /run's ...
MAX_RUN_BODY_BYTES = MAX_PROJECT_BYTES * 4 // 3 + MAX_BODY_BYTES  # ... which carries its project in base64
COMMANDS_AT_ONCE = 8  # commands the server runs for clients at the same time ...
COMMANDS_PER_USER = 2  # ... and for one user
