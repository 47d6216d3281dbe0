"""A console served by a real uvicorn server on a free port, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

import httpx
import uvicorn

from eventstore.console import create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def serving(
    url: str, *, token: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a console over the store at `url`, until the block ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        create_app(url, token=token), log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()  # the startup's error
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30
        ) as client:
            yield client
    finally:
        server.should_exit = True
        await task
        listener.close()
