"""``research-kit serve``: the review web app under uvicorn, on loopback unless told otherwise.

Off loopback the app says it must sit behind a TLS proxy, and marks its
cookies Secure (a browser then sends them over HTTPS only). uvicorn's access
log is off: the audit log records who did what, and addresses hold no more
than request and output numbers anyway.

SIGINT (Ctrl-C) and SIGTERM stop it: it stops listening, every process it
started for a client (a command, a run, and what they started) gets SIGTERM
at once and SIGKILL 5 s later (:func:`research_kit.lab.stop_tree`), so the
requests waiting on them answer; requests still open after
:data:`SHUTDOWN_SECONDS` are cancelled. It then exits with 130 (SIGINT) or
143 (SIGTERM). A second Ctrl-C stops at once.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from research_kit.core import users
from research_kit.core.errors import BadInput
from research_kit.core.workspace import Workspace

if TYPE_CHECKING:
    import uvicorn

SHUTDOWN_SECONDS = 15  # the longest open requests are waited for once a signal came (the processes they wait on:
# GRACE_SECONDS after SIGTERM at the most)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(ws: Workspace, *, host: str, port: int, console: Console) -> None:
    import uvicorn

    from research_kit.lab import stop_tree
    from research_kit.web.app import create_app

    loopback = is_loopback(host)
    everyone = users.all_users(ws)
    can_sign_in = [u for u in everyone if u.active and u.has_password]
    if not can_sign_in:
        raise BadInput(
            "nobody can sign in yet: add users ('research-kit users add NAME --role committee') and set their "
            "passwords ('research-kit users password NAME')"
        )
    if not loopback:
        console.print(
            f"[yellow]listening on {escape(host)}: put a TLS proxy in front; cookies are marked Secure, so plain "
            "HTTP sign-ins will not stick[/yellow]"
        )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"research-kit review app for workspace {ws.root}")
    console.print(f"open http://{escape(shown)}:{port}/ and sign in ({len(can_sign_in)} users can); Ctrl-C stops it")
    app = create_app(ws, secure_cookies=not loopback)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )  # fmt: skip
    server = _server(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when the port is taken
        if server.started:
            raise
        raise BadInput(f"could not listen on {host}:{port} (is another server using the port? try --port)") from exc
    finally:
        stop_tree(None)  # what a request started while the server was stopping, if anything
    if not server.started:  # uvicorn.run's own check
        raise BadInput(f"could not listen on {host}:{port} (is another server using the port? try --port)")
    signum = getattr(server, "signum", 0)
    if signum:
        console.print(f"stopped ({signal.Signals(signum).name}): the server and the processes it started have ended")
        raise SystemExit(128 + signum)


def _server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's server, whose first SIGINT or SIGTERM also stops every process under this one (in a thread: a
    signal handler must return at once), so that the requests waiting on them answer and the shutdown ends."""
    import uvicorn

    from research_kit.lab import stop_tree

    class Server(uvicorn.Server):
        signum = 0  # the first signal received
        signals = 0

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # As uvicorn's own, except that the signal is not raised again once the server has stopped.
            self.signals += 1
            if not self.signum:
                self.signum = sig
                hurry = lambda: self.signals > 1  # noqa: E731
                threading.Thread(target=stop_tree, kwargs={"hurry": hurry}, name="rk-stop", daemon=True).start()
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    return Server(config)
