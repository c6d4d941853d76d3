"""The firing decision on its own: thresholds, windows, out-of-order entries, firing, resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from vmjournal.alerts import window

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
W = timedelta(seconds=10)


def at(*seconds: float) -> list[window.Match]:
    return [(T0 + timedelta(seconds=s), i) for i, s in enumerate(seconds, start=100)]


def fresh() -> window.State:
    return window.State(rule_id=uuid4(), vm_id=uuid4())


class TestObserve:
    def test_threshold_one_fires_on_the_first_match(self) -> None:
        state = fresh()
        fired = window.observe(state, at(0), threshold=1, window=W, now=NOW)
        assert fired == window.Firing(tuple(at(0)))
        assert (state.status, state.firings, state.fired_at, state.episode_count) == ("firing", 1, NOW, 1)

    def test_needs_threshold_matches_within_the_window(self) -> None:
        state = fresh()
        assert window.observe(state, at(0, 11, 22), threshold=2, window=W, now=NOW) is None
        fired = window.observe(state, at(30), threshold=2, window=W, now=NOW)
        assert fired is not None and [m[0] for m in fired.matches] == [T0 + timedelta(seconds=s) for s in (22, 30)]
        assert state.matches == 4

    def test_fires_once_then_extends(self) -> None:
        state = fresh()
        fired = window.observe(state, at(0, 1, 2, 3, 4, 5, 6), threshold=3, window=W, now=NOW)
        # The firing's own matches, though the state has since kept only the latest five.
        assert fired == window.Firing(tuple(at(0, 1, 2)))
        assert (state.episode_count, state.firings, state.last_at) == (7, 1, T0 + timedelta(seconds=6))
        assert window.observe(state, at(7), threshold=3, window=W, now=NOW) is None
        assert state.episode_count == 8

    def test_an_earlier_entry_can_complete_a_window(self) -> None:
        state = fresh()
        assert window.observe(state, at(0, 100), threshold=2, window=W, now=NOW) is None
        fired = window.observe(state, [(T0 + timedelta(seconds=95), 102)], threshold=2, window=W, now=NOW)
        assert fired is not None and [m[1] for m in fired.matches] == [102, 101]
        assert (fired.first_at, fired.last_at) == (T0 + timedelta(seconds=95), T0 + timedelta(seconds=100))

    def test_keeps_only_what_it_needs(self) -> None:
        state = fresh()
        window.observe(state, at(*range(0, 1000, 20)), threshold=3, window=W, now=NOW)
        assert state.status == "ok" and len(state.recent) == window.SAMPLE
        state = fresh()
        window.observe(state, at(*range(0, 1000, 20)), threshold=8, window=W, now=NOW)
        assert len(state.recent) == 8

    def test_resolve_rearms(self) -> None:
        state = fresh()
        window.observe(state, at(0), threshold=1, window=W, now=NOW)
        window.resolve(state)
        assert (state.status, state.recent) == ("ok", [])
        assert window.observe(state, at(50), threshold=1, window=W, now=NOW) is not None
        assert state.firings == 2

    def test_round_trips_through_its_row(self) -> None:
        state = fresh()
        window.observe(state, at(0, 3), threshold=5, window=W, now=NOW)
        names = (
            "rule_id",
            "vm_id",
            "status",
            "recent_ts",
            "recent_seq",
            "first_at",
            "last_at",
            "episode_count",
            "fired_at",
            "last_seen_at",
            "matches",
            "firings",
        )
        again = window.State.from_record(dict(zip(names, state.values(), strict=True)))
        assert again == state
