"""When a run must stop starting work: SIGTERM (ECS stop, spot-style interruption, the DAG's
stop on timeout) or the optional `RUN_DEADLINE_SECONDS`.

SIGTERM is handled with a plain `signal.signal` handler rather than the event loop's, because
much of a run is blocking work inside one loop callback (downloads, ffmpeg): there the handler
raises `Stopped` on the spot (`subprocess.run` kills its ffmpeg child on the way out); while
the loop is awaiting model calls it only wakes the loop, and MAP cancels its calls in flight.
Past the deadline nothing is interrupted: no new model call starts and REDUCE still runs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger("analysis")

STOPPED = "stopped"
DEADLINE = "deadline"


class Stopped(Exception):
    """Raised out of blocking work when SIGTERM arrives."""

    def __init__(self) -> None:
        super().__init__(STOPPED)


class RunStop:
    """The run's stop signal: `reason` is None, "deadline" or "stopped" (SIGTERM wins)."""

    def __init__(self, deadline_s: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._clock = clock
        self._deadline_at = None if deadline_s is None else clock() + deadline_s
        self.deadline_s = deadline_s
        self._terminated = False
        self._raise_now = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    @property
    def reason(self) -> str | None:
        if self._terminated:
            return STOPPED
        if self._deadline_at is not None and self._clock() >= self._deadline_at:
            return DEADLINE
        return None

    @property
    def terminated(self) -> bool:
        return self._terminated

    # ---------------------------------------------------------------- the signal
    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGTERM while the run lasts (main thread only, as `signal` requires)."""
        if threading.current_thread() is not threading.main_thread():
            yield  # embedded in another program's thread: its owner handles signals
            return
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if not self._terminated:
            log.warning("SIGTERM: stopping; no new work starts, publishing what is done")
        self._terminated = True
        if self._loop is not None and self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)
        if self._raise_now:
            self._raise_now = False  # once: the unwinding itself must not be interrupted
            raise Stopped()

    @contextmanager
    def blocking(self) -> Iterator[None]:
        """Blocking work that SIGTERM may interrupt at once (a stop raises `Stopped` here)."""
        self.check()
        self._raise_now = True
        try:
            yield
        finally:
            self._raise_now = False

    def check(self) -> None:
        if self._terminated:
            raise Stopped()

    # ---------------------------------------------------------------- async side
    async def wait(self) -> str:
        """Until SIGTERM or the deadline; returns the reason."""
        return await self._wait(deadline=True)

    async def wait_terminated(self) -> str:
        """Until SIGTERM only (the deadline does not interrupt REDUCE)."""
        return await self._wait(deadline=False)

    async def _wait(self, *, deadline: bool) -> str:
        if self._event is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
        if self._terminated:
            return STOPPED
        timeout = None
        if deadline and self._deadline_at is not None:
            timeout = max(0.0, self._deadline_at - self._clock())
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return self.reason or DEADLINE
        return STOPPED

    async def unless_terminated(self, coro: Any) -> tuple[bool, Any]:
        """Run `coro` unless SIGTERM arrives first: (True, result) or (False, None)."""
        work = asyncio.ensure_future(coro)
        waiter = asyncio.create_task(self.wait_terminated())
        try:
            done, _ = await asyncio.wait([work, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if work in done:
            return True, work.result()
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        return False, None
