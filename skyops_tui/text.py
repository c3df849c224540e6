"""How times and durations read, for the console's screens and the command line alike.

Plain strings from the standard library only, so every layer may use them: the CLI
prints the same countdowns the screens show without importing the Textual app.
Money has its own formatter, `domain.money.fmt`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def clock(t: float, seconds: bool = True) -> str:
    """A UTC time of day: '14:05:09', or '14:05' without seconds."""
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S" if seconds else "%H:%M")


def stamp(t: float) -> str:
    """A UTC date and time: '2026-12-01 14:05:09'."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None, compact: bool = False, prose: bool = False) -> str:
    """A short countdown or age: '2h 59m', '4m 05s', '12s', '3d 4h'.

    `compact` is for table columns (`skyops jobs`): no spaces ('2h59m', '4m05s') and no
    days, so a long run still reads in hours ('49h00m'). `prose` is for sentences in
    events ('booking expires in 2 h 59 min'): whole minutes, words for units."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if prose:
        if s >= 3600:
            return f"{s // 3600} h {s % 3600 // 60} min"
        return f"{s // 60} min" if s >= 60 else f"{s} s"
    sign = "-" if s < 0 else ""
    s = abs(s)
    gap = "" if compact else " "
    if s >= 86400 and not compact:
        return f"{sign}{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{sign}{s // 3600}h{gap}{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{sign}{s // 60}m{gap}{s % 60:02d}s"
    return f"{sign}{s}s"
