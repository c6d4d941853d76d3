"""Errors of the pure parsers (journalctl filters, journal entries).

They are ``ValueError``s and carry no HTTP: the CLI uses the same parsers without loading the web
stack. ``vmjournal.errors`` answers every one as 400 ``{"error": code, "message": message}``.
"""

from __future__ import annotations


class InvalidInput(ValueError):
    """Input a parser refuses; ``code`` names the problem for a script, ``message`` for a person."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
