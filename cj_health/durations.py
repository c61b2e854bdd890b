"""Relative times on the command line: `8h`, `30m`, `2d`, `1w`, `+8 hours`, `90 minutes`.
Pure parsing (no clock, no database): `ack --until` adds the duration to the server's now(),
`history --since` and `incidents --since` subtract it."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "m": "minutes", "min": "minutes", "mins": "minutes", "minute": "minutes",
    "minutes": "minutes",
    "h": "hours", "hr": "hours", "hrs": "hours", "hour": "hours", "hours": "hours",
    "d": "days", "day": "days", "days": "days",
    "w": "weeks", "week": "weeks", "weeks": "weeks",
}  # fmt: skip
_DURATION = re.compile(r"\+?\s*(\d{1,9})\s*([a-z]+)", re.IGNORECASE)
EXAMPLES = "8h, 30m, 2d, 1w, +8 hours"


def parse_duration(text: str) -> timedelta | None:
    """The duration `text` names, or None when it is not one (then it may be a time).
    A number too large for a date (`999999999d`) is not a duration either."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return None
    unit = _UNITS.get(match.group(2).lower())
    if unit is None:
        return None
    try:
        return timedelta(**{unit: int(match.group(1))})
    except OverflowError:
        return None
