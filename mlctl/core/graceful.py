"""One graceful stop for every long-running loop: SIGTERM/SIGINT set a flag, the loop drains, exit 130.

``detect watch``, ``classify-logs stream``, the model server and the deploy supervisor each run
until told to stop. They share :class:`GracefulStop`: while installed, SIGTERM and SIGINT do not
kill the process; they record which signal came and set a stop event, which the loop checks
between units of work (a poll, a batch, a supervision tick), finishes what it holds and returns.
The caller then exits with :func:`exit_code_for_stop`: 130 after Ctrl-C (SIGINT), through the
one exit-code map of :mod:`mlctl.core.errors`, and 0 after SIGTERM, the ordinary way a service
manager stops a service.

A :class:`GracefulStop` reads like a :class:`threading.Event` (``is_set``, ``wait(timeout)``,
``set``: the :class:`StopFlag` protocol), so a loop written against an event takes one as is; it
answers ``is_set()`` at once from the signal handler's flag, and sets its own (or a given) event
from a helper thread, since setting an event inside a handler can deadlock on the event's lock.
:meth:`GracefulStop.wait_async` waits for it from asyncio code. Handlers can only be
installed from the main thread; elsewhere installing is a no-op and only :meth:`request_stop`
stops the loop. A second signal while stopping calls ``on_signal`` again, or, with
``escalate=True``, restores the previous handlers and raises :class:`KeyboardInterrupt` (give
up at once).

>>> stop = GracefulStop()
>>> stop.is_set(), stop.stopped_by
(False, None)
>>> stop.request_stop("limit")
>>> stop.is_set(), stop.stopped_by, exit_code_for_stop(stop.stopped_by)
(True, 'limit', 0)
>>> exit_code_for_stop("SIGINT")
130
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from mlctl.core.errors import EXIT_OK, exit_code_for

if TYPE_CHECKING:
    import asyncio

__all__ = ["STOP_SIGNALS", "GracefulStop", "StopFlag", "exit_code_for_stop"]

#: The signals that ask a loop to stop.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)

SignalCallback = Callable[[int, FrameType | None], Any]


class StopFlag(Protocol):
    """What a loop checks between units of work: a :class:`threading.Event` or a :class:`GracefulStop`."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def set(self) -> None: ...


def exit_code_for_stop(stopped_by: str | None) -> int:
    """The exit code after a loop stopped for ``stopped_by`` (a signal name or another reason).

    ``"SIGINT"`` (Ctrl-C) maps like a :class:`KeyboardInterrupt` (130); anything else is 0.
    """
    return exit_code_for(KeyboardInterrupt()) if stopped_by == "SIGINT" else EXIT_OK


class GracefulStop:
    """SIGTERM/SIGINT handlers that set a stop event instead of killing the process.

    Use as a context manager (handlers restored on exit) or with :meth:`install` and
    :meth:`restore` (a process-lifetime loop). ``event``: an existing event to set (a loop's own
    stop event); ``on_signal(signum, frame)``: called from the handler for every signal (keep it
    to setting attributes); ``escalate``: a second signal restores the previous handlers and
    raises :class:`KeyboardInterrupt`.
    """

    def __init__(
        self,
        *,
        signals: Iterable[int] = STOP_SIGNALS,
        event: StopFlag | None = None,
        on_signal: SignalCallback | None = None,
        escalate: bool = False,
    ) -> None:
        self.signals = tuple(signal.Signals(s) for s in signals)
        self.event: StopFlag = event if event is not None else threading.Event()
        self.on_signal = on_signal
        self.escalate = escalate
        #: names of the signals received, in order ("SIGTERM", "SIGINT")
        self.received: list[str] = []
        self._reason: str | None = None
        self._flag = False
        self._previous: dict[signal.Signals, Any] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._waiters_lock = threading.Lock()

    # -- installing --------------------------------------------------------------------------
    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> GracefulStop:
        """Take over the stop signals (main thread only; a no-op elsewhere or when installed)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return self
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
        for sig in self.signals:
            signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        """Put the previous handlers back (idempotent)."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def __enter__(self) -> GracefulStop:
        return self.install()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

    # -- the handler -------------------------------------------------------------------------
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        again = self.is_set()
        self.received.append(name)
        if again and self.escalate:  # asked twice: give up at once
            self.restore()
            raise KeyboardInterrupt
        if self.on_signal is not None:
            self.on_signal(signum, frame)
        self._set(name)

    def _set(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason
        self._flag = True
        # The handler runs in the main thread between two bytecodes, possibly while that thread
        # holds the event's internal lock (inside ``event.wait``): setting it from here could
        # deadlock, so a short-lived thread sets it. ``is_set`` reads the flag at once.
        threading.Thread(target=self._wake, name="mlctl-graceful-stop", daemon=True).start()

    def _wake(self) -> None:
        self.event.set()
        with self._waiters_lock:
            waiters = list(self._waiters)
        for loop, aevent in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(aevent.set)

    # -- the loop's side ---------------------------------------------------------------------
    def request_stop(self, reason: str = "stop") -> None:
        """Stop without a signal (from any thread): the same as a signal, named ``reason``."""
        if self._reason is None:
            self._reason = reason
        self._flag = True
        self._wake()

    def set(self) -> None:
        """:meth:`request_stop`, under :class:`threading.Event`'s name."""
        self.request_stop()

    def is_set(self) -> bool:
        """True once a stop was asked for (signal or :meth:`request_stop`)."""
        return self._flag or self.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking at once when a stop is asked for; True if asked."""
        return self.is_set() or self.event.wait(timeout)

    async def wait_async(self) -> None:
        """Wait, in asyncio code, until a stop is asked for."""
        import asyncio

        loop = asyncio.get_running_loop()
        aevent = asyncio.Event()
        with self._waiters_lock:
            self._waiters.append((loop, aevent))
        try:
            if not self.is_set():
                await aevent.wait()
        finally:
            with self._waiters_lock:
                self._waiters.remove((loop, aevent))

    @property
    def stopped_by(self) -> str | None:
        """The first signal's name (or :meth:`request_stop`'s reason); None while running."""
        return self._reason if self.is_set() else None

    @property
    def last_signal(self) -> str | None:
        return self.received[-1] if self.received else None

    @property
    def interrupted(self) -> bool:
        """True when a SIGINT (Ctrl-C) came."""
        return "SIGINT" in self.received

    @property
    def exit_code(self) -> int:
        """130 when the first stop was Ctrl-C (SIGINT), else 0 (see :func:`exit_code_for_stop`)."""
        return exit_code_for_stop(self.stopped_by)
