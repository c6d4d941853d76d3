"""How evaluation plans its match column: equal filters once, shared guards once, indexes kept."""

from __future__ import annotations

from vmjournal.alerts import matching
from vmjournal.journal.store import EventFilter


def nginx(**overrides: object) -> EventFilter:
    return EventFilter(units=["nginx.service"], **overrides)  # type: ignore[arg-type]


class TestSplit:
    def test_guard_and_rest_divide_the_filter(self) -> None:
        f = nginx(priority_max=3, grep="upstream", grep_case_sensitive=False, matches={"_TRANSPORT": [b"kernel"]})
        guard, rest = matching.split(f)
        assert guard == nginx(priority_max=3)
        assert rest == EventFilter(grep="upstream", grep_case_sensitive=False, matches={"_TRANSPORT": [b"kernel"]})

    def test_a_filter_of_columns_only_has_an_empty_rest(self) -> None:
        guard, rest = matching.split(nginx(priority_max=3))
        assert guard == nginx(priority_max=3)
        assert rest.live_key() == EventFilter().live_key()


class TestPlan:
    def test_equal_filters_are_decided_once(self) -> None:
        [group] = matching.plan([nginx(grep="a"), nginx(grep="a"), nginx(grep="b")])
        assert [(c.rest.grep, c.members) for c in group.costly] == [("a", [0, 1]), ("b", [2])]

    def test_filters_group_by_guard_in_first_seen_order(self) -> None:
        filters = [
            EventFilter(grep="x"),
            nginx(grep="a"),
            nginx(priority_max=3),
            EventFilter(grep="x", grep_case_sensitive=False),
            nginx(grep="b"),
        ]
        groups = matching.plan(filters)
        assert [g.guard for g in groups] == [EventFilter(), nginx(), nginx(priority_max=3)]
        assert [[c.members for c in g.costly] for g in groups] == [[[0], [3]], [[1], [4]], [[2]]]

    def test_no_filter_no_group(self) -> None:
        assert matching.plan([]) == []


class TestAlternation:
    def test_plain_patterns_join(self) -> None:
        assert all(matching.joinable(g) for g in ["disk", "^disk$", "refused|reset", "a(b)c", "x(?:y)", "\\d+"])

    def test_back_references_and_leading_options_do_not(self) -> None:
        assert not any(matching.joinable(g) for g in ["(o)\\1", "(a)(b)\\2", "(?i)disk", "***=a.b"])

    def test_alternation_wraps_each_distinct_grep_once(self) -> None:
        assert matching.alternation(["b|c", "a", "b|c"]) == "(?:a)|(?:b|c)"
