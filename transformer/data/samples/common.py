"""What the sample generators share: the row type and helpers for writing word lists and sentences."""

from __future__ import annotations

Example = dict[str, str]


def _phrases(text: str) -> tuple[str, ...]:
    """Comma-separated phrases, so that word lists with multi-word entries stay compact."""
    return tuple(phrase.strip() for phrase in text.split(",") if phrase.strip())


def _pairs(text: str) -> dict[str, str]:
    """``"a:b c:d"`` -> ``{"a": "b", "c": "d"}``."""
    return dict(pair.split(":") for pair in text.split())


def _sentence_case(text: str) -> str:
    return text[0].upper() + text[1:]
