"""The three calendar readers of tests/calendar_readers.py: a valid calendar passes all of them,
and each broken one is refused by exactly the readers pinned here."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import vobject.base

from tests.calendar_readers import (
    CalDAV,
    check_all,
    check_with_icalendar,
    check_with_vobject,
    split_by_uid,
    without_method,
)

pytest_plugins = ["tests.calendar_readers"]

START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")


def calendar_bytes(
    uid: str | None,
    start: datetime = START,
    end: datetime = START + timedelta(hours=1),
    method: str | None = None,
    extra_uids: tuple[str, ...] = (),
) -> bytes:
    """A minimal VCALENDAR built with icalendar: VERSION, PRODID, and a VEVENT with UID,
    DTSTAMP, DTSTART, DTEND and SUMMARY (``uid=None`` leaves UID out)."""
    calendar = icalendar.Calendar()
    calendar.add("version", "2.0")
    calendar.add("prodid", "-//acuscheduler//tests//EN")
    if method:
        calendar.add("method", method)
    for n, event_uid in enumerate((uid, *extra_uids)):
        event = icalendar.Event()
        if event_uid is not None:
            event.add("uid", event_uid)
        event.add("dtstamp", datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
        event.add("dtstart", start + timedelta(days=n))
        event.add("dtend", end + timedelta(days=n))
        event.add("summary", "Acupuncture, follow-up")
        calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data


def test_a_valid_minimal_calendar_passes_all_three(caldav: CalDAV) -> None:
    data = calendar_bytes("valid-minimal@acuscheduler.test")

    calendar = check_all(data, caldav, "valid-minimal")

    assert [str(e["UID"]) for e in calendar.events] == ["valid-minimal@acuscheduler.test"]
    stored = icalendar.Calendar.from_ical(caldav.get("valid-minimal"))
    assert [str(e["UID"]) for e in stored.events] == ["valid-minimal@acuscheduler.test"]
    assert stored.events[0].start == START


def test_putting_the_same_resource_again_replaces_it(caldav: CalDAV) -> None:
    data = calendar_bytes("replaced@acuscheduler.test")
    assert caldav.put("replaced", data) == 201
    check_all(data, caldav, "replaced")  # passes on 204 too
    assert caldav.put("replaced", data) == 204


def test_a_time_zone_and_a_recurrence_pass_all_three_without_warnings(caldav: CalDAV) -> None:
    calendar = icalendar.Calendar.from_ical(calendar_bytes("weekly@acuscheduler.test"))
    event = calendar.events[0]
    event["DTSTART"] = icalendar.vDDDTypes(datetime(2026, 11, 24, 10, 0, tzinfo=LONDON))
    event["DTEND"] = icalendar.vDDDTypes(datetime(2026, 11, 24, 11, 0, tzinfo=LONDON))
    event.add("rrule", {"freq": "weekly", "count": 3})
    calendar.add_missing_timezones()
    data = calendar.to_ical()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_all(data, caldav, "weekly")

    assert [str(w.message) for w in caught] == []
    assert b"BEGIN:VTIMEZONE" in caldav.get("weekly")


def test_an_event_without_uid_is_refused_by_vobject_and_radicale_not_icalendar(
    caldav: CalDAV,
) -> None:
    data = calendar_bytes(None)

    check_with_icalendar(data)  # icalendar reads it, and round-trips it, without a word
    with pytest.raises(vobject.base.ValidateError, match="at least 1 UID"):
        check_with_vobject(data)
    assert caldav.put("no-uid", data) == 400
    assert "VEVENT component without UID" in caldav.log_tail()
    with pytest.raises(vobject.base.ValidateError):
        check_all(data, caldav, "no-uid")


def test_an_event_ending_before_it_starts_is_refused_by_nobody(caldav: CalDAV) -> None:
    """None of the three readers compares DTEND with DTSTART: a test that cares must."""
    data = calendar_bytes("backwards@acuscheduler.test", end=START - timedelta(hours=1))

    calendar = check_all(data, caldav, "backwards")

    assert calendar.events[0].end < calendar.events[0].start


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"this is not a calendar\r\n", id="text"),
        pytest.param(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n", id="unclosed"),
        pytest.param(b"\x00\xff\xfe\x89PNG\r\n\x1a\n", id="binary"),
    ],
)
def test_garbage_is_refused_by_all_three(caldav: CalDAV, garbage: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- icalendar raises a bare ValueError
        check_with_icalendar(garbage)
    # vobject's ParseError; UnicodeDecodeError (also a ValueError) for bytes that are not UTF-8.
    with pytest.raises((vobject.base.ParseError, UnicodeDecodeError)):
        check_with_vobject(garbage)
    assert caldav.put("garbage", garbage) == 400


def test_a_property_icalendar_cannot_read_fails_the_round_trip_check() -> None:
    data = calendar_bytes("bad-date@acuscheduler.test").replace(
        b"DTSTART:20261124T100000Z", b"DTSTART:not-a-date"
    )
    assert b"DTSTART:not-a-date" in data

    with pytest.raises(AssertionError, match="icalendar skipped broken properties"):
        check_with_icalendar(data)


def test_two_events_with_different_uids_are_a_file_but_not_a_caldav_resource(
    caldav: CalDAV,
) -> None:
    data = calendar_bytes("feed-1@acuscheduler.test", extra_uids=("feed-2@acuscheduler.test",))

    assert len(check_with_icalendar(data).events) == 2
    check_with_vobject(data)
    assert caldav.put("feed", data) == 400
    assert "Multiple VEVENT components with different UIDs" in caldav.log_tail()

    parts = split_by_uid(data)
    assert list(parts) == ["feed-1@acuscheduler.test", "feed-2@acuscheduler.test"]
    for n, part in enumerate(parts.values(), start=1):
        assert len(check_all(part, caldav, f"feed-{n}").events) == 1


def test_a_uid_already_stored_under_another_name_is_a_conflict(caldav: CalDAV) -> None:
    data = calendar_bytes("stored-once@acuscheduler.test")
    check_all(data, caldav, "stored-once")

    assert caldav.put("stored-twice", data) == 409


@pytest.mark.parametrize("method", ["REQUEST", "CANCEL"])
def test_radicale_stores_an_itip_method_although_caldav_forbids_it(
    caldav: CalDAV, method: str
) -> None:
    """RFC 4791 §4.1 forbids METHOD in a stored calendar object; Radicale 3.9 keeps it anyway."""
    uid = f"itip-{method.lower()}@acuscheduler.test"
    data = calendar_bytes(uid, method=method)

    assert check_all(data, caldav, f"itip-{method.lower()}")["METHOD"] == method
    assert f"METHOD:{method}".encode() in caldav.get(f"itip-{method.lower()}")

    stripped = without_method(data)
    assert b"METHOD" not in stripped
    check_all(stripped, caldav, f"itip-{method.lower()}")
