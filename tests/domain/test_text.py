"""The one duration formatter: the screens' style and the CLI tables' compact style."""

from __future__ import annotations

from skyops_tui.text import duration


def test_screens_read_durations_with_a_space_and_days_past_a_day():
    assert [duration(s) for s in (12, 245, 10_740, 97_200, -245)] == [
        "12s",
        "4m 05s",
        "2h 59m",
        "1d 3h",
        "-4m 05s",
    ]
    assert duration(None) == "—"


def test_cli_tables_read_durations_compact_and_in_hours_past_a_day():
    assert [duration(s, compact=True) for s in (12, 245, 10_740, 97_200)] == [
        "12s",
        "4m05s",
        "2h59m",
        "27h00m",
    ]


def test_events_read_durations_in_words() -> None:
    """The third style, once grid.py's own formatter: sentences in events."""
    assert duration(600, prose=True) == "10 min"
    assert duration(2 * 3600 + 59 * 60, prose=True) == "2 h 59 min"
    assert duration(45, prose=True) == "45 s"
