"""Calendar files for the bench, written as Google Calendar exports them."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path

HEADER = """\
BEGIN:VCALENDAR
PRODID:-//Google Inc//Google Calendar 70.9054//EN
VERSION:2.0
CALSCALE:GREGORIAN
METHOD:PUBLISH
X-WR-CALNAME:{name}
X-WR-TIMEZONE:Europe/London
BEGIN:VTIMEZONE
TZID:Europe/London
X-LIC-LOCATION:Europe/London
BEGIN:DAYLIGHT
TZOFFSETFROM:+0000
TZOFFSETTO:+0100
TZNAME:BST
DTSTART:19700329T010000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0100
TZOFFSETTO:+0000
TZNAME:GMT
DTSTART:19701025T020000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
"""

SUMMARIES = (
    "Supervision",
    "CPD: pulse diagnosis",
    "Dentist",
    "School run",
    "Home visit",
    "BAcC regional meeting",
    "Herbal dispensary",
    "Accounts",
    "Gym",
    "Lunch with Sam",
)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def busy_calendar(
    path: Path, *, name: str, uid_prefix: str, count: int, first: date, days: int, seed: int
) -> Path:
    """Write ``count`` single events spread over ``days`` days from ``first``.

    Mostly timed events of 30 minutes to three hours between 07:00 and 20:00 local time, one in
    fifty an all-day event, each with a description and a location, as a real diary has.
    """
    rng = random.Random(seed)
    # A fixed DTSTAMP keeps files byte-identical for a seed; naive, as _stamp writes it as UTC.
    stamp = datetime(2026, 1, 5, 9, 0)  # noqa: DTZ001
    lines = [HEADER.format(name=name).rstrip("\n")]
    for number in range(count):
        day = first + timedelta(days=rng.randrange(days))
        lines.append("BEGIN:VEVENT")
        if rng.random() < 0.02:
            lines.append(f"DTSTART;VALUE=DATE:{day:%Y%m%d}")
            lines.append(f"DTEND;VALUE=DATE:{day + timedelta(days=1):%Y%m%d}")
        else:
            start = datetime.combine(day, datetime.min.time()) + timedelta(
                minutes=rng.randrange(7 * 4, 20 * 4) * 15
            )
            end = start + timedelta(minutes=rng.choice((30, 45, 60, 90, 120, 180)))
            lines.append(f"DTSTART;TZID=Europe/London:{start:%Y%m%dT%H%M%S}")
            lines.append(f"DTEND;TZID=Europe/London:{end:%Y%m%dT%H%M%S}")
        lines += [
            f"DTSTAMP:{_stamp(stamp)}",
            f"UID:{uid_prefix}{number:06d}@bench.invalid",
            f"CREATED:{_stamp(stamp - timedelta(days=30))}",
            f"DESCRIPTION:Booked from the diary\\, see notes {number}",
            f"LAST-MODIFIED:{_stamp(stamp)}",
            "LOCATION:Cambridge",
            "SEQUENCE:0",
            "STATUS:CONFIRMED",
            f"SUMMARY:{rng.choice(SUMMARIES)}",
            "TRANSP:OPAQUE",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path
