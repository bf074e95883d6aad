"""Stop a request's work when its client goes away before the response starts.

Starlette does not watch the connection while a route is working: a client that gives up while
its document is compressing, or while the backend has not answered yet, would still have its
request sent on, wait for the whole answer, and be logged as a 200. `DisconnectWatch.run` runs
the work as a task and listens for the ASGI `http.disconnect` message beside it, once the body
has been read (`body_read()`; before that, the body reader owns `receive`). When the client goes
first the work is cancelled - that closes any backend connection it had open - and
ClientDisconnect is raised, which the chat route logs as 499. Shared compressions are not lost:
the cache runs them in their own task (single flight), so they finish and are stored.

Once the work returns a response the watch stops; a streaming response watches for the
disconnect itself from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import ClientDisconnect
from starlette.types import Receive

T = TypeVar("T")


class DisconnectWatch:
    def __init__(self, receive: Receive):
        self._receive = receive
        self._body_read = asyncio.Event()

    def body_read(self) -> None:
        """The request body is fully read: from now on only the watch reads `receive`."""
        self._body_read.set()

    async def run(self, work: Awaitable[T]) -> T:
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(self._gone())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()  # the client went first, or we are being cancelled ourselves
                with contextlib.suppress(BaseException):
                    await task
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
        if task.cancelled():
            raise ClientDisconnect()
        return task.result()

    async def _gone(self) -> None:
        await self._body_read.wait()
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return
