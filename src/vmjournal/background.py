"""What the service's background loops share: sleeping until poked, and stopping within a bound.

Not ``asyncio.wait_for`` for the sleep: on Python 3.11 it returns normally when a cancellation
arrives after the awaited event was set, so a loop cancelled at that moment (the service stopping
just as a job finished) polled on forever and the shutdown never ended. ``asyncio.timeout`` keeps
the cancellation. ``cancel_all`` bounds a stop all the same: a task that ignores its cancel is
logged with its stack and left behind, and the service still stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

STOP_SECONDS = 10.0


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        """Poke the loop; a poke while it is busy makes its next ``wait`` return at once."""
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Return once poked or after ``seconds``, whichever is first; a cancellation always raises."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        self._event.clear()


async def cancel_all(tasks: Iterable[asyncio.Task[Any] | None], what: str, seconds: float = STOP_SECONDS) -> None:
    """Cancel ``what``'s tasks and wait until they end, however each ends (a stopping service has
    no use for their errors), for at most ``seconds``."""
    running = {task for task in tasks if task is not None}
    for task in running:
        task.cancel()
    if not running:
        return
    done, stuck = await asyncio.wait(running, timeout=seconds)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
    if stuck:
        log.error(
            "%s: %d task(s) still running %.0f s after their cancel; stopping without them\n%s",
            what,
            len(stuck),
            seconds,
            stacks(stuck),
        )


def stacks(tasks: Iterable[asyncio.Task[Any]]) -> str:
    """Where each task is waiting, as asyncio prints it: what a stop that hangs needs to show."""
    out = io.StringIO()
    for task in tasks:
        task.print_stack(file=out)
    return out.getvalue()
