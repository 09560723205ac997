"""The event hub: one change stream of stream changes per process, fanned out to subscribers.

Parameters (``LUNA_STREAMS_EVENTS_*`` settings):

- ``max_subscribers``: open subscriptions at most; one more is refused
  (:class:`shared.core.errors.EventSubscribersLimit`). Kept below the gateway's connection cap
  (the settings refuse more), so subscribers never hold every connection.
- ``max_per_client``: open subscriptions of one client (the ``client`` a subscription
  names: the gateway passes the client's address) at most; one more is refused
  (:class:`shared.core.errors.EventSubscribersPerClientLimit`), so one client cannot take them all.
- ``buffer_size``: events queued for one subscriber at most. A subscriber that falls that far
  behind is dropped (its ``on_overflow`` callback closes its connection); it comes back with
  the id of the last event it got and misses nothing.
- ``history_size``: recent events kept, so a subscriber resuming from one of them (or from a
  position the hub announced) is served from memory with no change stream of its own.

A subscriber resuming from an older id, or from an id another gateway gave, reads a change
stream of its own from that resume token until it reaches an event the hub has seen, then
joins the hub: no event is lost or repeated on the way. A hub opens its change stream on
the first subscription and keeps it until :meth:`StreamEventHub.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Final

from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.errors import OperationFailure, PyMongoError

from shared.core.backoff import Backoff
from shared.core.errors import (
    BadEventId,
    BadLastEventId,
    DependencyUnavailable,
    EventSubscribersLimit,
    EventSubscribersPerClientLimit,
)
from shared.core.types import Doc
from shared.services.events import (
    EventFilter,
    StreamEvent,
    event_id,
    resume_token,
    shape_change,
    watch_changes,
)
from shared.store.mongo import Database

log = logging.getLogger("luna_streams.events")

#: a failed change stream is reopened after 0.5-1 s, then up to 30 s while failures go on
REOPEN_BACKOFF = Backoff(first=1.0, cap=30.0)

DEFAULT_MAX_SUBSCRIBERS: Final = 250
DEFAULT_MAX_PER_CLIENT: Final = 20
DEFAULT_BUFFER_SIZE: Final = 256
DEFAULT_HISTORY_SIZE: Final = 1024
#: how long one getMore of the change stream waits for changes, in milliseconds
MAX_AWAIT_MS: Final = 1000
#: MongoDB codes of a resume token that cannot be used
_BAD_TOKEN_CODES: Final = frozenset({9, 260, 280, 286})


class Subscription:
    """One subscriber's events, in order: ``await next()`` until it raises ``Dropped``.

    Events come from the hub's history (a resume), from a change stream of the subscriber's
    own (a resume from further back) and then live from the hub. Live events wait here, at
    most ``buffer_size`` of them; the others are read ahead no further than that either.
    """

    class Dropped(Exception):
        """The subscriber fell ``buffer_size`` events behind, or the hub closed."""

    def __init__(self, hub: StreamEventHub, event_filter: EventFilter, position: str) -> None:
        self.hub = hub
        self.filter = event_filter
        #: the id of the point this subscription starts after (the SSE ``ready`` id)
        self.position = position
        self.on_overflow: Callable[[], None] | None = None
        self._items: deque[StreamEvent] = deque()
        self._replayed = 0  # items at the front that came from history, not live
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._dropped = False
        self._follower: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Live events waiting for this subscriber (history it replays is shared)."""
        return len(self._items) - self._replayed

    @property
    def dropped(self) -> bool:
        return self._dropped

    async def next(self, wait: float) -> StreamEvent | None:
        """The next event, or ``None`` after ``wait`` seconds without one."""
        if not self._items and not self._dropped:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
        if self._items:
            if self._replayed:
                self._replayed -= 1
            event = self._items.popleft()
            if len(self._items) < self.hub.buffer_size:
                self._room.set()
            return event
        if self._dropped:
            raise Subscription.Dropped()
        return None

    def offer(self, event: StreamEvent) -> None:
        """Called by the hub for every event: queue it, or drop a subscriber that is full."""
        if self._dropped or not self.filter.matches(event):
            return
        if self.queued >= self.hub.buffer_size:
            self.drop(overflow=True)
            return
        self._items.append(event)
        self._wake.set()

    async def read_ahead(self, event: StreamEvent) -> None:
        """Queue an event of the subscriber's own change stream, waiting for room."""
        while len(self._items) >= self.hub.buffer_size and not self._dropped:
            self._room.clear()
            await self._room.wait()
        if self.filter.matches(event):
            self._items.append(event)
            self._wake.set()

    def join(self, backlog: list[StreamEvent]) -> None:
        """Become a live subscriber after ``backlog`` (called in one step, atomically)."""
        replay = [event for event in backlog if self.filter.matches(event)]
        self._items.extend(replay)
        self._replayed = len(self._items)
        self.hub.live.add(self)
        self._wake.set()

    def drop(self, *, overflow: bool = False) -> None:
        if self._dropped:
            return
        self._dropped = True
        self.hub.live.discard(self)
        self._room.set()
        self._wake.set()
        if overflow:
            log.info("event subscriber dropped: %d events behind", self.hub.buffer_size)
            self._items.clear()  # the subscriber resumes from the last id it got
            self._replayed = 0
            if self.on_overflow is not None:
                self.on_overflow()

    async def close(self) -> None:
        self.drop()
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower


class StreamEventHub:
    def __init__(
        self,
        database: Database,
        *,
        max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
        max_per_client: int = DEFAULT_MAX_PER_CLIENT,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        history_size: int = DEFAULT_HISTORY_SIZE,
    ) -> None:
        self.database = database
        self.max_subscribers = max_subscribers
        self.max_per_client = max_per_client
        #: subscriptions open or opening, by client
        self.per_client: Counter[str] = Counter()
        self.buffer_size = buffer_size
        self.history_size = history_size
        self.live: set[Subscription] = set()
        self.subscriptions: set[Subscription] = set()
        self._opening = 0
        self._history: deque[tuple[int, StreamEvent]] = deque(maxlen=history_size)
        #: id -> how many events had been published at that point (oldest evicted)
        self._points: OrderedDict[str, int] = OrderedDict()
        self._seen = 0
        self._position: str | None = None
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # --- subscribing ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        event_filter: EventFilter,
        last_event_id: str | None = None,
        client: str | None = None,
    ) -> AsyncIterator[Subscription]:
        """A subscription to the events after ``last_event_id`` (after now when ``None``),
        counted against ``client``'s cap (``None``: no client's).

        Raises before yielding: 12012 for an id that cannot be resumed from, the limits of
        subscribers (one client's: 429, then all: 503), 503 when the database has no
        change streams.
        """
        if client is not None and self.per_client[client] >= self.max_per_client:
            raise EventSubscribersPerClientLimit(limit=self.max_per_client)
        if len(self.subscriptions) + self._opening >= self.max_subscribers:
            raise EventSubscribersLimit(limit=self.max_subscribers)
        with self._counted(client):
            self._opening += 1
            try:
                await self._start()
                subscription = await self._open(event_filter, last_event_id)
                self.subscriptions.add(subscription)
            finally:
                self._opening -= 1
            try:
                yield subscription
            finally:
                self.subscriptions.discard(subscription)
                await subscription.close()

    @contextlib.contextmanager
    def _counted(self, client: str | None) -> Iterator[None]:
        """``client``'s subscription, from the moment it is taken until it ends."""
        if client is None:
            yield
            return
        self.per_client[client] += 1
        try:
            yield
        finally:
            self.per_client[client] -= 1
            if not self.per_client[client]:
                del self.per_client[client]

    async def _open(self, event_filter: EventFilter, last_event_id: str | None) -> Subscription:
        if last_event_id is None or last_event_id in self._points:
            assert self._position is not None
            subscription = Subscription(self, event_filter, last_event_id or self._position)
            seen = self._seen if last_event_id is None else self._points[last_event_id]
            subscription.join(self._after(seen))
            return subscription
        try:
            token = resume_token(last_event_id)
        except BadEventId as exc:
            raise BadLastEventId(reason=str(exc)) from None
        try:
            stream = await watch_changes(
                self.database, resume_after=token, max_await_time_ms=MAX_AWAIT_MS
            )
        except OperationFailure as exc:
            if exc.code in _BAD_TOKEN_CODES:
                message = (exc.details or {}).get("errmsg", "cannot resume from it")
                raise BadLastEventId(reason=str(message)[:200]) from None
            raise
        subscription = Subscription(self, event_filter, last_event_id)
        subscription._follower = asyncio.create_task(self._follow(subscription, stream))
        return subscription

    async def _follow(self, subscription: Subscription, stream: AsyncChangeStream[Doc]) -> None:
        """Read a resuming subscriber's own change stream until it meets the hub's."""
        try:
            async with stream:
                while not subscription.dropped:
                    change = await stream.try_next()
                    point = event_id(change["_id"] if change else stream.resume_token or {})
                    if point in self._points:
                        subscription.join(self._after(self._not_yet_delivered(point)))
                        return
                    if change is None:
                        continue
                    event = await shape_change(self.database, change)
                    if event is not None:
                        await subscription.read_ahead(event)
        except PyMongoError as exc:
            log.warning("resumed event stream ended: %r", exc)
            subscription.drop(overflow=True)

    def _not_yet_delivered(self, point: str) -> int:
        """Events before ``point`` a follower has had: the point's event itself is not."""
        seen = self._points[point]
        if any(number == seen and event.event_id == point for number, event in self._history):
            return seen - 1
        return seen

    def _after(self, seen: int) -> list[StreamEvent]:
        return [event for number, event in self._history if number > seen]

    # --- the change stream --------------------------------------------------------------

    async def _start(self) -> None:
        if self._closed:
            raise DependencyUnavailable(reason="the gateway is stopping")
        if self._task is None or self._task.done():
            self._ready.clear()
            self._failure = None
            self._task = asyncio.create_task(self._run())
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait([ready, self._task], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not self._ready.is_set():
            reason = f"change streams unavailable ({type(self._failure).__name__}: {self._failure})"
            raise DependencyUnavailable(reason=reason[:300])

    async def _run(self) -> None:
        resume: Mapping[str, Any] | None = None
        after_invalidate = False
        failures = 0
        while True:
            try:
                options: dict[str, Any] = {"max_await_time_ms": MAX_AWAIT_MS}
                if resume is not None:
                    options["start_after" if after_invalidate else "resume_after"] = resume
                async with await watch_changes(self.database, **options) as stream:
                    failures, after_invalidate = 0, False
                    resume = self._note_position(stream.resume_token) or resume
                    self._ready.set()
                    while True:
                        change = await stream.try_next()
                        if change is None:
                            resume = self._note_position(stream.resume_token) or resume
                            continue
                        if change.get("operationType") == "invalidate":
                            resume, after_invalidate = change["_id"], True
                            break
                        self._publish(await shape_change(self.database, change))
                        resume = change["_id"]
            except PyMongoError as exc:
                if not self._ready.is_set():
                    self._failure = exc
                    return
                failures += 1
                log.warning("event change stream failed (%r); reopening", exc)
                if isinstance(exc, OperationFailure) and exc.code in _BAD_TOKEN_CODES:
                    resume = None  # history lost: every subscriber must start again
                    for subscription in list(self.subscriptions):
                        subscription.drop(overflow=True)
                await asyncio.sleep(REOPEN_BACKOFF.delay(failures))

    def _note_position(self, token: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Everything up to ``token`` has been published (an empty batch's resume token).

        An idle change stream gives a new token every batch: only the newest one of a
        quiet spell is kept, so they do not push out the ids of the events in the history.
        """
        if token is not None:
            point = event_id(token)
            previous = self._position
            if previous is not None and previous != point and self._is_quiet_point(previous):
                del self._points[previous]
            self._position = point
            self._mark(point, self._seen)
        return token

    def _is_quiet_point(self, point: str) -> bool:
        """A point noted after an empty batch since the last event (not an event's id)."""
        if self._points.get(point) != self._seen:
            return False
        return not self._history or self._history[-1][1].event_id != point

    def _publish(self, event: StreamEvent | None) -> None:
        """Record and fan out one event, in one step: nothing subscribes in between."""
        if event is None:
            return
        self._seen += 1
        self._history.append((self._seen, event))
        self._position = event.event_id
        self._mark(event.event_id, self._seen)
        for subscription in list(self.live):
            subscription.offer(event)

    def _mark(self, point: str, seen: int) -> None:
        self._points[point] = seen
        self._points.move_to_end(point)
        oldest = self._history[0][0] if self._history else self._seen + 1
        while self._points:
            first, number = next(iter(self._points.items()))
            if number >= oldest - 1 and len(self._points) <= 2 * self.history_size:
                break
            del self._points[first]

    async def close(self) -> None:
        """End every subscription and the change stream (at shutdown)."""
        self._closed = True
        for subscription in list(self.subscriptions):
            subscription.drop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
