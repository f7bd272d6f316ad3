"""All calendar output: one booking's file, invites and cancellations, practitioners' feeds.

Built with ``icalendar``. Times carry the clinic's TZID with a VTIMEZONE in the RRULE style
(see :mod:`scheduler.calendars.timezones`). Every text that came from a person goes through
:func:`clean_text` or :func:`clean_param` first, so it cannot break out of its property or
parameter; ``icalendar`` then escapes commas, semicolons, backslashes and newlines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum

from icalendar import Calendar, Event, vCalAddress, vText

from scheduler.booking.models import Booking, BookingStatus
from scheduler.calendars.timezones import vtimezone
from scheduler.clinic.models import Clinic, Practitioner

PRODID = "-//Acupuncture Scheduler//EN"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
_NEWLINES = re.compile(r"\r\n|\r|\n")


class Method(StrEnum):
    """The iTIP method of a calendar file (RFC 5546)."""

    PUBLISH = "PUBLISH"
    REQUEST = "REQUEST"
    CANCEL = "CANCEL"


def clean_text(value: str, *, multiline: bool = False) -> str:
    """Drop control characters; keep line breaks only where the property may hold several."""
    value = _CONTROL.sub("", value)
    if multiline:
        return _NEWLINES.sub("\n", value)
    return _NEWLINES.sub(" ", value).strip()


def clean_param(value: str) -> str:
    """Make ``value`` safe inside a parameter: one line, no double quotes (RFC 5545 §3.2)."""
    return clean_text(value).replace('"', "'")


def manage_url(base_url: str, booking: Booking) -> str:
    """The booking's private page."""
    return f"{base_url}/b/{booking.manage_token}"


def _address(email: str, name: str, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{clean_param(email)}")
    address.params["CN"] = clean_param(name)
    for key, value in params.items():
        address.params[key] = value
    return address


def booking_event(
    clinic: Clinic,
    booking: Booking,
    *,
    base_url: str,
    stamp: datetime,
    method: Method = Method.PUBLISH,
    patient_label: str | None = None,
    checklist: Sequence[str] = (),
) -> Event:
    """Return the VEVENT of one booking.

    ``stamp`` is the DTSTAMP (now, for a message; the last change, for a feed that must stay
    byte-identical while nothing changes). ``patient_label`` replaces the patient's name in
    the summary (feeds show first name and initial); invites name the patient as ATTENDEE.
    ``checklist`` is how to prepare, for the patient's copies.
    """
    tz = clinic.tz
    link = manage_url(base_url, booking)
    treatment = clean_text(booking.treatment.name)
    practitioner = clean_text(booking.practitioner.name)
    lines = [f"{treatment} with {practitioner}."]
    if checklist:
        lines += ["", "How to prepare:", *(f"- {clean_text(item)}" for item in checklist)]
    lines += ["", f"Change or cancel: {link}"]
    if patient_label is not None:
        summary = f"{treatment}: {clean_text(patient_label)}"
    else:
        summary = f"{treatment} at {clean_text(clinic.name)}"
    event = Event()
    event.add("uid", booking.calendar_uid)
    event.add("sequence", booking.sequence)
    event.add("dtstamp", stamp)
    event.add("dtstart", booking.start_at.astimezone(tz))
    event.add("dtend", booking.end_at.astimezone(tz))
    event.add("summary", summary)
    event.add("location", clean_text(clinic.address))
    event.add("description", "\n".join(lines))
    event.add("url", link)
    event.add("last-modified", booking.updated_at)
    event.add("organizer", _address(clinic.email or "clinic@localhost", clinic.name))
    if method is not Method.PUBLISH:
        event.add(
            "attendee",
            _address(
                booking.patient.email,
                booking.patient.name,
                ROLE="REQ-PARTICIPANT",
                PARTSTAT="NEEDS-ACTION",
                RSVP="TRUE",
            ),
        )
    cancelled = method is Method.CANCEL or booking.status == BookingStatus.CANCELLED
    # A request waiting for the clinic's approval holds its time, tentatively.
    tentative = booking.awaiting_approval
    event.add("status", "CANCELLED" if cancelled else "TENTATIVE" if tentative else "CONFIRMED")
    event.add("transp", "OPAQUE")
    return event


def _calendar(
    clinic: Clinic, events: Sequence[Event], method: Method, *, name: str | None = None
) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method.value)
    if name is not None:
        calendar.add("x-wr-calname", vText(clean_text(name)))
        calendar.add("x-wr-timezone", clinic.timezone)
    around = min((event.decoded("dtstart") for event in events), default=None)
    calendar.add_component(
        vtimezone(
            clinic.tz, around.date() if around is not None else datetime.now(clinic.tz).date()
        )
    )
    for event in events:
        calendar.add_component(event)
    return calendar.to_ical()


def booking_calendar(
    clinic: Clinic,
    booking: Booking,
    *,
    base_url: str,
    now: datetime,
    method: Method = Method.PUBLISH,
    checklist: Sequence[str] = (),
) -> bytes:
    """Return one booking as a file: a download (PUBLISH), an invite or a cancellation."""
    if method is Method.CANCEL and booking.status != BookingStatus.CANCELLED:
        raise ValueError("only a cancelled booking can be sent as a cancellation")
    event = booking_event(
        clinic, booking, base_url=base_url, stamp=now, method=method, checklist=checklist
    )
    return _calendar(clinic, [event], method)


def first_name_and_initial(name: str) -> str:
    """``Ann Marie Lee`` becomes ``Ann L.``: enough for a diary, little for a passer-by."""
    parts = clean_text(name).split()
    if not parts:
        return "Patient"
    if len(parts) == 1:
        return parts[0]
    return f"{parts[0]} {parts[-1][0]}."


def practitioner_feed(
    clinic: Clinic, practitioner: Practitioner, bookings: Iterable[Booking], *, base_url: str
) -> bytes:
    """Return a practitioner's subscription feed of live bookings (METHOD:PUBLISH).

    Each event's DTSTAMP is its last change, so the feed is byte-identical until something
    changes and calendar apps polling it can be answered 304.
    """
    events = [
        booking_event(
            clinic,
            booking,
            base_url=base_url,
            stamp=booking.updated_at,
            patient_label=first_name_and_initial(booking.patient.name),
        )
        for booking in bookings
        if booking.is_live
    ]
    return _calendar(clinic, events, Method.PUBLISH, name=f"{practitioner.name} – {clinic.name}")
