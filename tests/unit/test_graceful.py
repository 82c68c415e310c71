"""The one graceful-stop helper: signals set a stop flag, handlers are restored, Ctrl-C maps to 130."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from mlctl.core.errors import EXIT_INTERRUPTED, EXIT_OK
from mlctl.core.graceful import GracefulStop, exit_code_for_stop


def _signal_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # the handler runs in the main thread at the next bytecode boundary


@pytest.mark.parametrize(("sig", "name", "code"), [(signal.SIGTERM, "SIGTERM", EXIT_OK),
                                                   (signal.SIGINT, "SIGINT", EXIT_INTERRUPTED)])
def test_a_signal_sets_the_flag_and_names_itself(sig: int, name: str, code: int) -> None:
    before = signal.getsignal(sig)
    event = threading.Event()
    with GracefulStop(event=event) as stop:
        assert stop.installed and not stop.is_set() and stop.stopped_by is None
        _signal_self(sig)
        assert stop.is_set()  # at once, from the handler's flag
        assert stop.wait(10) and event.wait(10)  # the given event is set too
        assert (stop.stopped_by, stop.received, stop.exit_code) == (name, [name], code)
        assert stop.interrupted is (sig == signal.SIGINT)
    assert signal.getsignal(sig) == before and not stop.installed


def test_exit_codes_go_through_the_exit_code_map() -> None:
    assert exit_code_for_stop("SIGINT") == EXIT_INTERRUPTED == 130
    for other in ("SIGTERM", "stop", "limit", None):
        assert exit_code_for_stop(other) == EXIT_OK


def test_on_signal_is_called_for_every_signal_and_the_first_one_names_the_stop() -> None:
    seen: list[int] = []
    with GracefulStop(on_signal=lambda signum, _frame: seen.append(signum)) as stop:
        _signal_self(signal.SIGTERM)
        _signal_self(signal.SIGINT)  # without escalate, a second signal is recorded, not fatal
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert (stop.stopped_by, stop.last_signal, stop.received) == ("SIGTERM", "SIGINT", ["SIGTERM", "SIGINT"])
    assert stop.interrupted and stop.exit_code == EXIT_OK  # the first stop was SIGTERM


def test_escalate_gives_up_on_the_second_signal_and_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGINT)
    stop = GracefulStop(escalate=True).install()
    try:
        _signal_self(signal.SIGTERM)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            _signal_self(signal.SIGINT)
        assert not stop.installed and signal.getsignal(signal.SIGINT) == before
    finally:
        stop.restore()


def test_request_stop_and_set_work_from_any_thread_without_handlers() -> None:
    stop = GracefulStop()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(stop.wait(30)))
    waiter.start()
    threading.Thread(target=stop.set).start()
    waiter.join(30)
    assert woke == [True] and stop.stopped_by == "stop" and stop.exit_code == EXIT_OK
    limited = GracefulStop()
    limited.request_stop("limit")
    assert limited.stopped_by == "limit" and limited.event.is_set()


def test_installing_off_the_main_thread_is_a_no_op() -> None:
    before = signal.getsignal(signal.SIGTERM)
    result: list[bool] = []

    def worker() -> None:
        with GracefulStop() as stop:
            result.append(stop.installed)

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert result == [False] and signal.getsignal(signal.SIGTERM) == before


def test_install_and_restore_are_idempotent() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = GracefulStop()
    stop.install()
    handler = signal.getsignal(signal.SIGTERM)
    stop.install()  # a second install does not record its own handler as the previous one
    assert signal.getsignal(signal.SIGTERM) == handler
    stop.restore()
    stop.restore()
    assert signal.getsignal(signal.SIGTERM) == before


def test_wait_async_wakes_an_asyncio_loop_on_a_signal() -> None:
    async def main(stop: GracefulStop) -> str:
        waiting = asyncio.ensure_future(stop.wait_async())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(waiting, 10)
        return str(stop.stopped_by)

    with GracefulStop() as stop:
        assert asyncio.run(main(stop)) == "SIGTERM"

    async def already(stop: GracefulStop) -> None:
        await asyncio.wait_for(stop.wait_async(), 1)  # a stop asked before returns at once

    done = GracefulStop()
    done.request_stop()
    asyncio.run(already(done))
