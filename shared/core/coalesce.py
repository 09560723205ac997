"""Group commit: requests that arrive while one is being written are written together.

A database pays per round trip far more than per document, and the embedded server pays
even more for concurrent writers than for one writer with more documents. So the gateway
does not send N concurrent creates (or audit rows) as N writes: one :class:`Coalescer` per kind
of work runs one batch at a time, and whatever arrived meanwhile (up to ``max_batch``)
becomes the next batch. An idle gateway adds no delay (a lone request runs at once); a busy
one turns its concurrency into bigger, fewer writes. A failure fails every request of its
batch, and each caller answers its own client (nothing was acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self, run: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = 100
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting for a batch (not in the one being written)."""
        return len(self._waiting)

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        # let the requests that arrived with the first one (ready to run in this turn of
        # the event loop) join its batch: no delay, one write fewer
        await asyncio.sleep(0)
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            batch = [(item, future) for item, future in batch if not future.cancelled()]
            if not batch:
                continue
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:
                # not swallowed: whatever failed the batch, each of its callers gets it
                # raised and answers it; this task goes on with the next batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
