"""Forward a loopback TCP port to a Unix socket: how a researcher's browser reaches the sandboxed lab.

The lab's server has no network (its own network namespace); it listens on a
Unix socket in a folder bound out of its sandbox. This forwarder, outside,
accepts connections on ``127.0.0.1:PORT`` and pipes each one, both ways, to
that socket. It reads nothing of what passes.

The folder is writable from inside the sandbox, so the socket there could be
swapped for a link to another socket of the host: each connection is checked
(``SO_PEERCRED``) to end at a process that ``peer_ok`` accepts (the lab
server's own tree), or it is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


def peer_pid(conn: socket.socket) -> int:
    """The process id at the other end of a Unix socket, as the kernel reports it."""
    pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(pid)


async def forward(
    port: int,
    socket_path: Path,
    *,
    stop: Callable[[], bool],
    peer_ok: Callable[[int], bool],
    host: str = "127.0.0.1",
) -> None:
    """Serve ``host:port`` until ``stop()`` returns true (checked every half second)."""

    async def connected(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            if not stat.S_ISSOCK(socket_path.lstat().st_mode):
                raise OSError("not a socket")
            server_reader, server_writer = await asyncio.open_unix_connection(str(socket_path))
        except OSError:
            client_writer.close()
            return
        if not peer_ok(peer_pid(server_writer.get_extra_info("socket"))):
            server_writer.close()
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    server = await asyncio.start_server(connected, host, port)
    async with server:
        while not stop():
            await asyncio.sleep(0.5)
