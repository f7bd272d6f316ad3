"""Shapes of the JSON the public API accepts, validated with pydantic."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
)

from scheduler.booking.courses import MAX_EVERY_WEEKS, MAX_SESSIONS
from scheduler.patients.models import Condition
from scheduler.timeutil import EARLIEST, LATEST, checked_instant

Id = Annotated[int, Field(strict=True, gt=0, lt=2**31)]
Instant = Annotated[AwareDatetime, AfterValidator(checked_instant)]
OneLine = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$")
]


class Strict(BaseModel):
    """Refuses fields it does not know, so a typo is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid")


class PatientIn(Strict):
    """Who the booking is for."""

    name: Annotated[OneLine, StringConstraints(min_length=1, max_length=200)]
    email: Annotated[EmailStr, StringConstraints(max_length=254)]
    phone: Annotated[
        str,
        StringConstraints(strip_whitespace=True, max_length=50, pattern=r"^(\+?[0-9 ()\-.]{5,})?$"),
    ] = ""


FreeText = Annotated[
    str, StringConstraints(max_length=2000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
]


class IntakeIn(Strict):
    """The first-visit answers: required (with ``consent: true``) when the service is one."""

    medications: FreeText = ""
    conditions: list[Condition] = Field(default_factory=list, max_length=len(Condition))
    other_conditions: FreeText = ""
    consent: StrictBool = False


class InsteadIn(Strict):
    """One date of a course changed: ``of`` is its usual start (as a conflict names it);
    ``start`` the time taken instead, with ``practitioner`` (the course's when left out), or
    ``null`` to leave the date out."""

    of: Instant
    start: Instant | None
    practitioner: Id | None = None


class RepeatIn(Strict):
    """A course: ``count`` sessions ``every_weeks`` apart, at the first session's time."""

    count: Annotated[int, Field(strict=True, ge=2, le=MAX_SESSIONS)]
    every_weeks: Annotated[int, Field(strict=True, ge=1, le=MAX_EVERY_WEEKS)] = 1
    instead: list[InsteadIn] = Field(default_factory=list, max_length=MAX_SESSIONS)


class BookingIn(Strict):
    """``POST /api/v1/bookings``; with ``repeat``, a course starting at ``start``."""

    service: Id
    practitioner: Id | None = None
    start: Instant
    patient: PatientIn
    notes: Annotated[
        str, StringConstraints(max_length=2000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")
    ] = ""
    intake: IntakeIn | None = None
    repeat: RepeatIn | None = None


class RescheduleIn(Strict):
    """``POST /api/v1/bookings/TOKEN/reschedule``."""

    start: Instant


class CancelIn(Strict):
    """``POST /api/v1/bookings/TOKEN/cancel`` (the body is optional)."""

    reason: Annotated[OneLine, StringConstraints(max_length=500)] = ""


def _checked_date(value: date) -> date:
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError("the date is out of range")
    return value


Day = Annotated[date, AfterValidator(_checked_date)]


class SlotQuery(BaseModel):
    """``GET /api/v1/slots``; other query parameters (a cache buster, say) are ignored."""

    service: Annotated[int, Field(gt=0, lt=2**31)]
    start: Day
    end: Day
    practitioner: Annotated[int, Field(gt=0, lt=2**31)] | None = None


# A body with thousands of unknown keys gets this many named, not an answer larger than it.
MAX_FIELD_ERRORS = 50


def field_errors(error: ValidationError) -> dict[str, str]:
    """Turn pydantic's errors into ``{"dotted.field": "message"}`` (the first
    :data:`MAX_FIELD_ERRORS` of them, and how many more under ``body``)."""
    fields: dict[str, str] = {}
    items = error.errors(include_url=False)
    named = {".".join(str(part) for part in item["loc"]) for item in items}
    if len(named) > MAX_FIELD_ERRORS:
        more = len(named) - MAX_FIELD_ERRORS + 1
        fields["body"] = f"{more} more fields need fixing; fix the ones named here first."
    for item in items:
        if len(fields) >= MAX_FIELD_ERRORS:
            break
        name = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"]
        if item["type"] == "string_pattern_mismatch":
            message = "contains characters that are not allowed here"
        elif item["type"] == "extra_forbidden":
            message = "is not a field this call knows"
        fields.setdefault(name, message)
    return fields


class WaitlistIn(Strict):
    """``POST /api/v1/waitlist``: wait for ``service`` with ``practitioner`` (``null``: anyone)
    on any of ``dates`` (the clinic's)."""

    service: Id
    practitioner: Id | None = None
    dates: Annotated[list[Day], Field(min_length=1, max_length=366)]
    patient: PatientIn
