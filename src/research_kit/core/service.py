"""The service mode's wire: what a command-line client sends ``research-kit serve``, and which commands it may.

In the service mode (``[auth].mode = "service"``) the workspace belongs to a
service account and people reach it only through ``research-kit serve``: the
web pages, and a JSON API under :data:`API` that takes the session token of
``research-kit login`` as its credential (``Authorization: Bearer TOKEN``).
A command line given ``RESEARCH_KIT_URL`` is a client: ``login`` and
``logout`` talk to the API, and each command of :data:`REMOTE_COMMANDS` is
sent to the server, which runs it there as the session's user (in a process
of its own, the token in :data:`SESSION_ENV`) and sends back its output and
exit code. The client never opens the workspace's files.
"""

from __future__ import annotations

URL_ENV = "RESEARCH_KIT_URL"  # the server a command-line client talks to, e.g. http://127.0.0.1:8765
SESSION_ENV = "RESEARCH_KIT_SESSION"  # the token a command the server runs for a client acts with (a bearer
# credential like the token file: whoever holds a live token acts as its user, and nobody else)
API = "/api/v1"

# What a client runs on the server: every researcher's, committee member's and steward's action that reads
# nothing from the client's disk. Not sent: init, key, simulate, ingest, synth (the steward works on the
# server), run, lab and pipeline (a study's project lives on the server), serve, demo.
REMOTE_COMMANDS = frozenset(
    {"budget", "query", "outputs", "review", "release", "users", "audit", "extracts", "risk", "rerun", "sandbox"}
)
MAX_ARGS = 64
MAX_ARG_CHARS = 4096
MAX_STDIN_CHARS = 65536
