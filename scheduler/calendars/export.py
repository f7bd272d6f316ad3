"""Calendar files for bookings, built with icalendar."""

from __future__ import annotations

from datetime import datetime

from icalendar import Calendar, Event, vCalAddress, vText

from scheduler.booking.models import Booking, BookingStatus
from scheduler.clinic.models import Clinic
from scheduler.clinic.preparation import FIRST_VISIT, PREPARATION
from scheduler.web import external_url

PRODID = "-//Acupuncture Scheduler//EN"


def booking_event(clinic: Clinic, booking: Booking, *, now: datetime) -> Event:
    """Return the VEVENT of one booking."""
    manage_url = external_url("booking.manage", token=booking.manage_token)
    checklist = (FIRST_VISIT if booking.treatment.first_visit else ()) + PREPARATION
    description = "\n".join(
        [
            f"{booking.treatment.name} with {booking.practitioner.name}.",
            "",
            "How to prepare:",
            *(f"- {item}" for item in checklist),
            "",
            f"Change or cancel: {manage_url}",
        ]
    )
    event = Event()
    event.add("uid", booking.calendar_uid)
    event.add("sequence", booking.sequence)
    event.add("dtstamp", now)
    event.add("dtstart", booking.start_at)
    event.add("dtend", booking.end_at)
    event.add("summary", f"{booking.treatment.name} at {clinic.name}")
    event.add("location", clinic.address)
    event.add("description", description)
    event.add("url", manage_url)
    organizer = vCalAddress(f"mailto:{clinic.email or 'clinic@localhost'}")
    organizer.params["cn"] = vText(clinic.name)
    event.add("organizer", organizer)
    cancelled = booking.status == BookingStatus.CANCELLED
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    return event


def booking_calendar(clinic: Clinic, booking: Booking, *, now: datetime) -> bytes:
    """Return one booking as a published ``.ics`` file."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    calendar.add_component(booking_event(clinic, booking, now=now))
    return calendar.to_ical()
