"""A background loop's alarm clock: sleep until poked or until the poll interval has passed.

Not ``asyncio.wait_for``: on Python 3.11 it returns normally when a cancellation arrives after the
awaited event was set, so a loop cancelled at that moment (by the service stopping just as a job
finished) polled on forever and the shutdown never ended. ``asyncio.timeout`` keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib


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
