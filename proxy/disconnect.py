"""Stop a request's work when its client goes away before the response starts.

Starlette does not watch the connection while a route is working: a client that gives up while
its document is compressing, or while the backend has not answered yet, would still have its
request sent on, wait for the whole answer, and be logged as a 200. `DisconnectWatch.run` awaits
the work and listens for the ASGI `http.disconnect` message beside it (in a task), once the body
has been read (`body_read()`; before that, the body reader owns `receive`). When the client goes
first the work is cancelled - that closes any backend connection it had open - and
ClientDisconnect is raised, which the chat route logs as 499. Shared compressions are not lost:
the cache runs them in their own task (single flight), so they finish and are stored.

Once the work returns a response the watch stops; a streaming response (`_RelayResponse` in
proxy/chat.py) runs its own watch over the stream from then on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import ClientDisconnect
from starlette.types import Receive

T = TypeVar("T")


class DisconnectWatch:
    def __init__(self, receive: Receive, *, body_read: bool = False):
        self._receive = receive
        self._body_read = asyncio.Event()
        if body_read:  # a response that streams: the body was read long ago
            self._body_read.set()
        self._gone = False
        self._done = False

    def body_read(self) -> None:
        """The request body is fully read: from now on only the watch reads `receive`."""
        self._body_read.set()

    async def run(self, work: Awaitable[T]) -> T:
        """Await `work` in this task; a disconnect cancels it and raises ClientDisconnect. (One
        watcher task per request and no second task for the work: this runs on every request.)"""
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.get_running_loop().create_task(self._watch(task))
        try:
            return await work
        except asyncio.CancelledError:
            if not self._gone:
                raise  # cancelled from outside (server shutdown): not ours to swallow
            task.uncancel()
            raise ClientDisconnect() from None
        finally:
            self._done = True  # a disconnect seen from now on must not cancel this task
            watcher.cancel()

    async def _watch(self, task: asyncio.Task) -> None:
        await self._body_read.wait()
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self._done:
                    self._gone = True
                    task.cancel()
                return
