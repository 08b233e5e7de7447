"""Report periods: the key a report is published under, so a period publishes once.

Keys sort in time order within a period kind: ``2025-04-03`` (daily),
``2025-W14`` (weekly, ISO 8601 week: Monday to Sunday, so 2024-12-30 is
``2025-W01``), ``2025-04`` (monthly).
"""

from __future__ import annotations

import datetime as dt

PERIOD_KINDS = ("daily", "weekly", "monthly")


def period_key(period: str, day: dt.date) -> str:
    """The key of the period ``day`` falls in.

    Example:
        >>> period_key("weekly", dt.date(2024, 12, 30)), period_key("monthly", dt.date(2025, 4, 3))
        ('2025-W01', '2025-04')
    """
    if period == "daily":
        return day.isoformat()
    if period == "weekly":
        iso = day.isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"
    if period == "monthly":
        return f"{day.year:04d}-{day.month:02d}"
    raise ValueError(f"period: {period!r} is not one of {', '.join(PERIOD_KINDS)}")


def today_utc() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


__all__ = ["PERIOD_KINDS", "period_key", "today_utc"]
