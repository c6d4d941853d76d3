"""The filter parsers refuse bad input with a domain error the service and the CLI both understand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vmjournal.input_errors import InvalidInput
from vmjournal.journal import filters


class TestInvalidInput:
    @pytest.mark.parametrize(
        ("parse", "spec", "code"),
        [
            (filters.unit_name, "no spaces allowed", "invalid_unit"),
            (filters.glob_to_like, "ssh[a-z]", "invalid_unit"),
            (filters.parse_priority, "loud", "invalid_priority"),
            # A digit to str.isdigit(), not to int().
            (filters.parse_priority, "²", "invalid_priority"),
            (filters.parse_time, "next tuesday-ish", "invalid_time"),
            (filters.parse_boot, "zzz", "invalid_boot"),
        ],
    )
    def test_names_the_problem(self, parse: Callable[[str], Any], spec: str, code: str) -> None:
        with pytest.raises(InvalidInput) as caught:
            parse(spec)
        assert caught.value.code == code
        assert caught.value.message and str(caught.value) == caught.value.message

    def test_is_a_value_error(self) -> None:
        # Callers outside HTTP (the CLI) catch it without knowing the web stack.
        with pytest.raises(ValueError, match="invalid boot"):
            filters.parse_boot("zzz")
