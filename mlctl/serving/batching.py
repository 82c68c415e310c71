"""Adaptive micro-batching of concurrent requests: pure asyncio, no web framework, no numpy.

Requests hand their rows to :meth:`MicroBatcher.submit` and await their own results. Rows wait
in a bounded queue; the batcher joins the waiting requests into one batch and runs the batch
function once, in a worker thread, so the event loop keeps accepting and parsing requests
while the model works. Each request gets back exactly the slice of results for its own rows.

When a batch is dispatched (the adaptive rule):

* the predictor is idle -> at once, with whatever is waiting (no latency is added at low load);
* while one batch runs, the next one grows with the requests arriving meanwhile, and goes as
  soon as the worker is free: batch size follows load by itself;
* with ``workers > 1`` (several batches in flight), a further batch goes when a worker is free
  and it holds ``max_batch`` rows or its first row has waited ``max_wait_ms``.

A batch never holds more than ``max_batch`` rows, except a single request with more rows than
that, which goes alone and whole. The queue holds at most ``queue_size`` waiting rows; a
request that would overflow it is refused at once with :class:`QueueFull` (the HTTP layer
answers 429 with ``Retry-After``): backpressure instead of unbounded latency.

>>> import asyncio
>>> async def demo():
...     batcher = MicroBatcher(lambda chunks: [x * 10 for chunk in chunks for x in chunk])
...     await batcher.start()
...     results = await asyncio.gather(batcher.submit([1, 2], 2), batcher.submit([3], 1))
...     await batcher.stop()
...     return results
>>> asyncio.run(demo())
[[10, 20], [30]]
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

C = TypeVar("C")  # one request's chunk of rows (a list, a numpy array...)
R = TypeVar("R")  # one row's result

#: ``batch_fn(chunks) -> results``: one result per row, in the order of the chunks' rows.
BatchFn = Callable[[list[C]], Sequence[R]]
#: ``on_batch(rows, requests, seconds)``: called after each batch (metrics).
BatchHook = Callable[[int, int, float], None]


class BatcherError(Exception):
    """Base of the errors :meth:`MicroBatcher.submit` raises before a request is queued."""


class QueueFull(BatcherError):
    """The queue cannot take the request's rows now; retry after ``retry_after_s`` seconds."""

    def __init__(self, rows: int, depth: int, capacity: int, retry_after_s: float):
        super().__init__(f"the queue holds {depth} of {capacity} rows; {rows} more do not fit")
        self.retry_after_s = retry_after_s


class TooManyRows(BatcherError):
    """One request has more rows than the whole queue can ever hold."""

    def __init__(self, rows: int, capacity: int):
        super().__init__(f"{rows} records in one request; the server takes at most {capacity}")
        self.rows = rows
        self.capacity = capacity


class NotRunning(BatcherError):
    """The batcher has not started yet, or is stopping."""


@dataclass(eq=False)
class _Item(Generic[C]):
    chunk: C
    rows: int
    future: asyncio.Future[list[Any]]
    queued_at: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[C, R]):
    """Joins concurrent requests' rows into batches for one batch function.

    ``batch_fn`` runs in a thread pool of ``workers`` threads (one by default: on a small
    machine one predict at a time, with a batch that grows under load, beats parallel small
    batches that fight for the GIL). ``max_wait_ms`` only matters with ``workers > 1``: an idle
    predictor never waits. The batcher must be started (and stopped) in the event loop that
    calls :meth:`submit`.
    """

    def __init__(
        self,
        batch_fn: Callable[[list[C]], Sequence[R]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        queue_size: int = 1024,
        workers: int = 1,
        on_batch: BatchHook | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.batch_fn = batch_fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.workers = workers
        self.on_batch = on_batch
        self._pending: deque[_Item[C]] = deque()
        self._pending_rows = 0
        self._busy = 0
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle: asyncio.Event | None = None
        self._recent_batch_s = 0.005  # smoothed duration of a batch, for Retry-After

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`: requests are accepted."""
        return self._running

    @property
    def depth(self) -> int:
        """Rows waiting in the queue (not yet handed to a worker)."""
        return self._pending_rows

    @property
    def in_flight(self) -> int:
        """Batches running in worker threads now."""
        return self._busy

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start accepting requests (in the running event loop)."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mlctl-predict")
        self._idle = asyncio.Event()
        self._idle.set()
        self._running = True

    async def stop(self, timeout: float | None = 30.0) -> None:
        """Stop accepting requests, finish the queued and running batches, release the threads.

        Requests still queued after ``timeout`` seconds fail with :class:`NotRunning`.
        """
        if self._executor is None:
            return
        self._running = False
        assert self._idle is not None
        self._pump()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            while self._pending:
                item = self._pending.popleft()
                if not item.future.done():
                    item.future.set_exception(NotRunning("the server stopped before this request ran"))
            self._pending_rows = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        executor, self._executor = self._executor, None
        executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ requests
    async def submit(self, chunk: C, rows: int) -> list[R]:
        """Queue one request's ``rows`` (held in ``chunk``) and wait for their results.

        Raises :class:`QueueFull`, :class:`TooManyRows` or :class:`NotRunning` without
        queueing anything; re-raises what ``batch_fn`` raised for the batch this request ran in.
        """
        if not self._running or self._loop is None:
            raise NotRunning("the model server is not running")
        if rows < 1:
            return []
        if rows > self.queue_size:
            raise TooManyRows(rows, self.queue_size)
        if self._pending_rows + rows > self.queue_size:
            raise QueueFull(rows, self._pending_rows, self.queue_size, self.retry_after_s())
        item: _Item[C] = _Item(chunk, rows, self._loop.create_future())
        self._pending.append(item)
        self._pending_rows += rows
        assert self._idle is not None
        self._idle.clear()
        self._pump()
        return await item.future

    def retry_after_s(self) -> float:
        """About how long the queue now waiting takes to drain (at least 1 ms)."""
        batches = max(1, -(-self._pending_rows // self.max_batch))
        return max(0.001, batches * self._recent_batch_s / self.workers)

    # ------------------------------------------------------------------ scheduling
    def _pump(self) -> None:
        """Dispatch every batch the rules allow now; arm a timer for the next deadline."""
        while self._pending and self._busy < self.workers and self._executor is not None:
            if self._busy and self._pending_rows < self.max_batch:
                wait = self._pending[0].queued_at + self.max_wait_s - time.monotonic()
                if wait > 0:
                    self._arm_timer(wait)
                    return
            self._dispatch(self._take_batch())
        if not self._pending and not self._busy and self._idle is not None:
            self._idle.set()

    def _arm_timer(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def _take_batch(self) -> list[_Item[C]]:
        batch: list[_Item[C]] = []
        rows = 0
        while self._pending:
            item = self._pending[0]
            if batch and rows + item.rows > self.max_batch:
                break
            self._pending.popleft()
            self._pending_rows -= item.rows
            if item.future.done():  # the client went away while it waited
                continue
            batch.append(item)
            rows += item.rows
        return batch

    def _dispatch(self, batch: list[_Item[C]]) -> None:
        if not batch:
            return
        assert self._loop is not None and self._executor is not None
        self._busy += 1
        chunks = [item.chunk for item in batch]
        started = time.perf_counter()
        future = self._loop.run_in_executor(self._executor, self._call, chunks)
        future.add_done_callback(lambda f: self._done(batch, f, started))

    def _call(self, chunks: list[C]) -> Sequence[R]:
        return self.batch_fn(chunks)

    def _done(self, batch: list[_Item[C]], future: asyncio.Future[Sequence[R]], started: float) -> None:
        self._busy -= 1
        elapsed = time.perf_counter() - started
        self._recent_batch_s = 0.8 * self._recent_batch_s + 0.2 * elapsed
        rows = sum(item.rows for item in batch)
        exc = future.exception() if not future.cancelled() else NotRunning("the batch was cancelled")
        results: Sequence[R] = ()
        if exc is None:
            results = future.result()
            if len(results) != rows:
                exc = RuntimeError(f"the model returned {len(results)} results for {rows} rows")
        offset = 0
        for item in batch:
            if item.future.done():
                offset += item.rows
                continue
            if exc is not None:
                item.future.set_exception(exc)
            else:
                item.future.set_result(list(results[offset: offset + item.rows]))
            offset += item.rows
        if self.on_batch is not None:
            with contextlib.suppress(Exception):  # metrics must never break serving
                self.on_batch(rows, len(batch), elapsed)
        self._pump()
