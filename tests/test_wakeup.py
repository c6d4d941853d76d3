"""The background loops' alarm clock (``vmjournal.wakeup``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from vmjournal.wakeup import Wakeup


async def test_returns_when_poked_or_after_its_interval() -> None:
    wakeup = Wakeup()
    started = time.monotonic()
    await wakeup.wait(0.2)
    assert 0.15 < time.monotonic() - started < 2
    wakeup.set()  # a poke while the loop was busy: its next wait returns at once
    started = time.monotonic()
    await wakeup.wait(30)
    assert time.monotonic() - started < 1
    started = time.monotonic()
    await wakeup.wait(0.2)  # that poke was used up
    assert time.monotonic() - started > 0.15


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_a_cancel_just_after_a_poke_stops_the_loop(steps: int) -> None:
    # The shutdown race: a job ends (poke) and the service stops (cancel) in the same few loop
    # steps. asyncio.wait_for on Python 3.11 swallowed the cancel when the event's waiter had
    # completed first, and the loop polled on forever.
    wakeup = Wakeup()
    polls = 0

    async def loop() -> None:
        nonlocal polls
        while True:
            polls += 1
            await wakeup.wait(30)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    wakeup.set()
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done == {task}, f"the loop survived its cancel (polled {polls} times)"
    assert task.cancelled()
