"""Forward a loopback TCP port to a Unix socket: how a researcher's browser reaches the sandboxed lab.

The lab's server has no network (its own network namespace); it listens on a
Unix socket in a folder bound out of its sandbox. This forwarder, outside,
accepts connections on ``127.0.0.1:PORT`` and pipes each one, both ways, to
that socket. It reads nothing of what passes.
"""

from __future__ import annotations

import asyncio
import contextlib
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


async def forward(port: int, socket_path: Path, *, stop: Callable[[], bool], host: str = "127.0.0.1") -> None:
    """Serve ``host:port`` until ``stop()`` returns true (checked every half second)."""

    async def connected(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_unix_connection(str(socket_path))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    server = await asyncio.start_server(connected, host, port)
    async with server:
        while not stop():
            await asyncio.sleep(0.5)
