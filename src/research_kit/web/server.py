"""``research-kit serve``: the review web app under uvicorn, on loopback unless told otherwise.

Off loopback the app says it must sit behind a TLS proxy, and marks its
cookies Secure (a browser then sends them over HTTPS only). uvicorn's access
log is off: the audit log records who did what, and addresses hold no more
than request and output numbers anyway.
"""

from __future__ import annotations

import ipaddress

from rich.console import Console
from rich.markup import escape

from research_kit.core import users
from research_kit.core.errors import BadInput
from research_kit.core.workspace import Workspace


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(ws: Workspace, *, host: str, port: int, console: Console) -> None:
    import uvicorn

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
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
    except SystemExit as exc:  # uvicorn exits when the port is taken
        raise BadInput(f"could not listen on {host}:{port} (is another server using the port? try --port)") from exc
