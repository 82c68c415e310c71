"""The adaptive micro-batcher, alone: pure asyncio, batch functions on plain lists."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Sequence

import pytest

from mlctl.serving.batching import MicroBatcher, NotRunning, QueueFull, TooManyRows


class Recorder:
    """A batch function that records each call's chunks; ``gate`` (when set) holds calls until opened."""

    def __init__(self, fn: Callable[[int], object] = lambda x: x * 10, gated: bool = False) -> None:
        self.calls: list[list[list[int]]] = []
        self.fn = fn
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        if not gated:
            self.gate.set()

    def __call__(self, chunks: list[list[int]]) -> Sequence[object]:
        self.calls.append([list(c) for c in chunks])
        self.entered.release()
        assert self.gate.wait(30), "test gate never opened"
        return [self.fn(x) for chunk in chunks for x in chunk]


async def started(rec: Callable[[list[list[int]]], Sequence[object]], **kwargs: object) -> MicroBatcher:
    batcher: MicroBatcher = MicroBatcher(rec, **kwargs)  # type: ignore[arg-type]
    await batcher.start()
    return batcher


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop (and the worker thread) run until ``predicate`` holds."""
    for _ in range(5000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


async def entered(rec: Recorder) -> None:
    """Wait until the worker thread is inside the batch function."""
    assert await asyncio.to_thread(rec.entered.acquire, True, 30)


def test_each_request_gets_exactly_its_own_results() -> None:
    async def main() -> None:
        rec = Recorder(fn=lambda x: x * 10)
        batcher = await started(rec, max_batch=16)
        rng = random.Random(7)
        requests = []
        start = 0
        for _ in range(300):
            n = rng.randint(1, 5)
            requests.append(list(range(start, start + n)))
            start += n

        async def client(rows: list[int]) -> list[object]:
            await asyncio.sleep(rng.random() / 1000)
            return await batcher.submit(rows, len(rows))

        results = await asyncio.gather(*(client(r) for r in requests))
        await batcher.stop()
        assert results == [[x * 10 for x in r] for r in requests]
        assert sum(len(call) for call in rec.calls) == len(requests)  # each request ran once
        assert max(len(call) for call in rec.calls) > 1, "concurrent requests were never batched"
        assert all(sum(len(c) for c in call) <= 16 or len(call) == 1 for call in rec.calls)

    asyncio.run(main())


def test_an_idle_predictor_runs_a_request_at_once_even_with_a_long_max_wait() -> None:
    async def main() -> None:
        rec = Recorder()
        batcher = await started(rec, max_wait_ms=3_600_000, max_batch=64)
        assert await asyncio.wait_for(batcher.submit([1], 1), timeout=30) == [10]
        assert rec.calls == [[[1]]]
        await batcher.stop()

    asyncio.run(main())


def test_requests_arriving_while_the_model_runs_form_the_next_batch() -> None:
    async def main() -> None:
        rec = Recorder(gated=True)
        batcher = await started(rec, max_batch=64)
        first = asyncio.ensure_future(batcher.submit([1], 1))
        await entered(rec)
        later = [asyncio.ensure_future(batcher.submit([x], 1)) for x in (2, 3, 4)]
        await until(lambda: batcher.depth == 3)
        assert batcher.in_flight == 1
        rec.gate.set()
        assert await first == [10]
        assert [await f for f in later] == [[20], [30], [40]]
        assert rec.calls == [[[1]], [[2], [3], [4]]]
        await batcher.stop()

    asyncio.run(main())


def test_max_batch_caps_rows_per_call_and_a_big_request_goes_alone_and_whole() -> None:
    async def main() -> None:
        rec = Recorder(gated=True)
        batcher = await started(rec, max_batch=4)
        blocker = asyncio.ensure_future(batcher.submit([0], 1))
        await entered(rec)
        small = [asyncio.ensure_future(batcher.submit([x], 1)) for x in range(1, 7)]
        big = asyncio.ensure_future(batcher.submit(list(range(100, 110)), 10))
        tail = asyncio.ensure_future(batcher.submit([7], 1))
        await until(lambda: batcher.depth == 17)
        rec.gate.set()
        await asyncio.gather(blocker, *small, big, tail)
        assert [sum(len(c) for c in call) for call in rec.calls] == [1, 4, 2, 10, 1]
        assert await big == [x * 10 for x in range(100, 110)]
        await batcher.stop()

    asyncio.run(main())


def test_a_full_queue_refuses_at_once_with_a_retry_hint() -> None:
    async def main() -> None:
        rec = Recorder(gated=True)
        batcher = await started(rec, queue_size=3)
        running = asyncio.ensure_future(batcher.submit([0, 0], 2))  # leaves the queue when dispatched
        await entered(rec)
        queued = [asyncio.ensure_future(batcher.submit([x], 1)) for x in (1, 2)]
        await until(lambda: batcher.depth == 2)
        with pytest.raises(QueueFull) as info:
            await batcher.submit([3, 4], 2)
        assert info.value.retry_after_s > 0
        assert batcher.depth == 2  # nothing of the refused request was queued
        fits = asyncio.ensure_future(batcher.submit([5], 1))
        rec.gate.set()
        assert await running == [0, 0]
        assert [await f for f in queued] == [[10], [20]]
        assert await fits == [50]
        await batcher.stop()

    asyncio.run(main())


def test_a_request_larger_than_the_queue_is_refused() -> None:
    async def main() -> None:
        batcher = await started(Recorder(), queue_size=5)
        with pytest.raises(TooManyRows) as info:
            await batcher.submit(list(range(6)), 6)
        assert info.value.capacity == 5
        assert await batcher.submit([], 0) == []
        await batcher.stop()

    asyncio.run(main())


def test_not_running_before_start_and_after_stop() -> None:
    async def main() -> None:
        batcher: MicroBatcher = MicroBatcher(Recorder())
        assert not batcher.running
        with pytest.raises(NotRunning):
            await batcher.submit([1], 1)
        await batcher.start()
        assert batcher.running
        await batcher.stop()
        assert not batcher.running
        with pytest.raises(NotRunning):
            await batcher.submit([1], 1)
        await batcher.stop()  # twice is fine

    asyncio.run(main())


def test_stop_finishes_queued_and_running_batches() -> None:
    async def main() -> None:
        rec = Recorder(gated=True)
        batcher = await started(rec)
        first = asyncio.ensure_future(batcher.submit([1], 1))
        await entered(rec)
        second = asyncio.ensure_future(batcher.submit([2], 1))
        await until(lambda: batcher.depth == 1)
        stopping = asyncio.ensure_future(batcher.stop())
        await until(lambda: not batcher.running)
        with pytest.raises(NotRunning):
            await batcher.submit([3], 1)
        rec.gate.set()
        await stopping
        assert await first == [10] and await second == [20]

    asyncio.run(main())


def test_a_failing_batch_fails_its_requests_only() -> None:
    async def main() -> None:
        def fn(x: int) -> int:
            if x == 13:
                raise ValueError("unlucky")
            return x

        rec = Recorder(fn=fn, gated=True)
        batcher = await started(rec)
        blocker = asyncio.ensure_future(batcher.submit([1], 1))
        await entered(rec)
        bad = [asyncio.ensure_future(batcher.submit([x], 1)) for x in (12, 13)]
        await until(lambda: batcher.depth == 2)
        rec.gate.set()
        assert await blocker == [1]
        for f in bad:
            with pytest.raises(ValueError, match="unlucky"):
                await f
        assert await batcher.submit([14], 1) == [14]
        await batcher.stop()

    asyncio.run(main())


def test_a_batch_function_returning_the_wrong_count_is_an_error() -> None:
    async def main() -> None:
        batcher: MicroBatcher = MicroBatcher(lambda chunks: [1])
        await batcher.start()
        with pytest.raises(RuntimeError, match="1 results for 2 rows"):
            await batcher.submit([1, 2], 2)
        await batcher.stop()

    asyncio.run(main())


def test_a_cancelled_request_is_left_out_of_its_batch() -> None:
    async def main() -> None:
        rec = Recorder(gated=True)
        batcher = await started(rec)
        blocker = asyncio.ensure_future(batcher.submit([1], 1))
        await entered(rec)
        gone = asyncio.ensure_future(batcher.submit([2], 1))
        kept = asyncio.ensure_future(batcher.submit([3], 1))
        await until(lambda: batcher.depth == 2)
        gone.cancel()
        rec.gate.set()
        assert await blocker == [10] and await kept == [30]
        assert rec.calls == [[[1]], [[3]]]
        await batcher.stop()

    asyncio.run(main())


def test_with_two_workers_a_partial_batch_waits_for_max_batch_while_the_other_runs() -> None:
    async def main() -> None:
        rec = Recorder(gated=True)
        batcher = await started(rec, workers=2, max_batch=2, max_wait_ms=3_600_000)
        first = asyncio.ensure_future(batcher.submit([1], 1))
        await entered(rec)
        second = asyncio.ensure_future(batcher.submit([2], 1))
        await until(lambda: batcher.depth == 1)
        for _ in range(20):
            await asyncio.sleep(0)
        assert batcher.in_flight == 1 and batcher.depth == 1  # waits: a worker is busy, batch not full
        third = asyncio.ensure_future(batcher.submit([3], 1))  # now the batch is full: it goes
        await entered(rec)
        assert batcher.in_flight == 2 and batcher.depth == 0
        rec.gate.set()
        assert [await f for f in (first, second, third)] == [[10], [20], [30]]
        assert rec.calls == [[[1]], [[2], [3]]]
        await batcher.stop()

    asyncio.run(main())


def test_with_two_workers_and_no_max_wait_the_second_worker_starts_at_once() -> None:
    async def main() -> None:
        rec = Recorder(gated=True)
        batcher = await started(rec, workers=2, max_batch=64, max_wait_ms=0)
        first = asyncio.ensure_future(batcher.submit([1], 1))
        await entered(rec)
        second = asyncio.ensure_future(batcher.submit([2], 1))
        await entered(rec)
        assert batcher.in_flight == 2
        rec.gate.set()
        assert await first == [10] and await second == [20]
        await batcher.stop()

    asyncio.run(main())


def test_the_batch_hook_sees_rows_and_requests() -> None:
    async def main() -> None:
        seen: list[tuple[int, int]] = []
        rec = Recorder(gated=True)
        batcher = await started(rec, on_batch=lambda rows, requests, seconds: seen.append((rows, requests)))
        first = asyncio.ensure_future(batcher.submit([1, 2], 2))
        await entered(rec)
        rest = [asyncio.ensure_future(batcher.submit([x], 1)) for x in (3, 4)]
        await until(lambda: batcher.depth == 2)
        rec.gate.set()
        await asyncio.gather(first, *rest)
        await until(lambda: len(seen) == 2)
        assert seen == [(2, 1), (2, 2)]
        await batcher.stop()

    asyncio.run(main())


def test_a_broken_hook_never_breaks_serving() -> None:
    async def main() -> None:
        def hook(rows: int, requests: int, seconds: float) -> None:
            raise RuntimeError("metrics down")

        batcher: MicroBatcher = MicroBatcher(lambda chunks: [x for c in chunks for x in c], on_batch=hook)
        await batcher.start()
        assert await batcher.submit([5], 1) == [5]
        await batcher.stop()

    asyncio.run(main())


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_wait_ms": -1}, {"queue_size": 0}, {"workers": 0}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(lambda chunks: [], **kwargs)  # type: ignore[arg-type]
