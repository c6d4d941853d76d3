"""What the background loops share (``vmjournal.background``): the wake-up sleep and the bounded stop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from vmjournal.background import Wakeup, cancel_all


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


async def test_cancel_all_waits_for_every_task_however_it_ends() -> None:
    async def sleeps() -> None:
        await asyncio.sleep(30)

    async def fails() -> None:
        raise RuntimeError("gone wrong before the stop")

    async def cleans_up() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.1)  # a short cleanup after its cancel is waited for

    tasks = [asyncio.create_task(f()) for f in (sleeps, fails, cleans_up)]
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await cancel_all([*tasks, None], "test")
    assert time.monotonic() - started < 5
    assert all(t.done() for t in tasks)


async def test_a_task_that_ignores_its_cancel_cannot_hold_the_stop(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass  # the bug this guards against: a cancel lost somewhere below

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="vmjournal.background"):
        await cancel_all([task], "test loop", seconds=0.3)
    assert 0.25 < time.monotonic() - started < 5
    assert not task.done()
    [record] = caplog.records
    assert "test loop: 1 task(s) still running" in record.getMessage()
    assert "stubborn" in record.getMessage()  # its stack names where it hangs
    release.set()
    task.cancel()
    await task
