"""Shapes of the staff API, ``/api/v1/staff``: the query parameters and bodies it accepts and
every answer it gives, as pydantic models (so the OpenAPI document can name them).

Times are ISO 8601 in the clinic's zone with their offset; dates are the clinic's.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from scheduler.api.schemas import Day, Strict
from scheduler.booking.models import BookingStatus

MAX_LIMIT = 200
DEFAULT_LIMIT = 50

# An aware time, written as ISO 8601 with its offset ("+00:00", never "Z").
Moment = Annotated[
    AwareDatetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
QueryId = Annotated[int, Field(gt=0, lt=2**31)]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str, StringConstraints(max_length=500)] | None
SearchText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$"),
]


# --- Query parameters ---------------------------------------------------------------------------


class Query(BaseModel):
    """Query parameters; others (a cache buster, say) are ignored."""

    model_config = ConfigDict(extra="ignore")


class BookingListQuery(Query):
    """``GET /api/v1/staff/bookings``: bookings starting on the clinic's days ``start`` to
    ``end`` (both inclusive; from today for two weeks when left out), oldest first."""

    start: Day | None = None
    end: Day | None = None
    practitioner: QueryId | None = None
    status: BookingStatus | None = None
    patient: SearchText = Field("", description="part of the patient's name, email or phone")
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor = Field(None, description="the next_cursor of the page before")


class PatientListQuery(Query):
    """``GET /api/v1/staff/patients``: patients whose name, email or phone contains ``q``, in
    the order they were added."""

    q: SearchText = ""
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor = Field(None, description="the next_cursor of the page before")


class RangeQuery(Query):
    """``GET /api/v1/staff/schedule`` and ``/busy``: the clinic's days ``start`` to ``end``,
    both inclusive, for one practitioner or (schedule only) everyone the token may see."""

    start: Day
    end: Day
    practitioner: QueryId | None = None


# --- Bodies -------------------------------------------------------------------------------------


class StatusIn(Strict):
    """``POST /api/v1/staff/bookings/ID/status``: mark the visit, or put it back to confirmed."""

    status: Literal["arrived", "completed", "no_show", "confirmed"]


# --- Answers ------------------------------------------------------------------------------------


class PatientRef(BaseModel):
    """Who a booking is for."""

    id: int
    name: str
    email: str
    phone: str


class CoursePlace(BaseModel):
    """A session's place in its course: its number (``null`` once cancelled) of how many, and
    how many of the course's visits were attended."""

    session: int | None
    of: int
    attended: int


class StaffBooking(BaseModel):
    """A booking as staff see it."""

    id: int
    status: BookingStatus
    start: Moment
    end: Moment
    timezone: str
    service: int
    service_name: str
    practitioner: int
    practitioner_name: str
    room: int
    room_name: str
    patient: PatientRef
    notes: str = Field(description="what the patient wrote when booking")
    staff_notes: str = Field(description="the staff's internal notes, never shown to the patient")
    late_cancellation: bool
    cancelled_at: Moment | None
    cancellation_reason: str
    awaiting_approval: bool = Field(description="a request staff have yet to approve")
    course: CoursePlace | None = Field(description="null for a single visit")
    booked_at: Moment
    manage_url: str = Field(description="the patient's own page for this booking")


class Intake(BaseModel):
    """A patient's first-visit answers."""

    medications: str
    conditions: list[str]
    other_conditions: str
    flags: list[str] = Field(description="the conditions as they matter for needling")
    consent_at: Moment
    updated_at: Moment


class StaffBookingDetail(StaffBooking):
    """A booking with the patient's health answers, for those who may read them."""

    intake_on_file: bool = Field(description="whether the patient has given intake answers")
    intake: Intake | None = Field(
        description="null when there are none or the token's role may not read them "
        "(only admins and the treating practitioner may)"
    )


class BookingPage(BaseModel):
    """A page of bookings; ask again with ``cursor=next_cursor`` for the next (``null``:
    this was the last)."""

    items: list[StaffBooking]
    next_cursor: str | None


class CourseBooked(BaseModel):
    """A course booked with ``repeat``: every session."""

    course: list[StaffBooking]
    sessions: int
    every_weeks: int


class Counts(BaseModel):
    """What came of a patient's bookings (with the token's practitioner, for a practitioner)."""

    completed: int
    no_shows: int
    late_cancellations: int


class PatientSummary(BaseModel):
    """A patient in the list."""

    id: int
    name: str
    email: str
    phone: str
    erased: bool = Field(description="the details were erased; the bookings stay, anonymised")
    next_visit: Moment | None
    counts: Counts


class PatientPage(BaseModel):
    """A page of patients; ask again with ``cursor=next_cursor`` for the next (``null``:
    this was the last)."""

    items: list[PatientSummary]
    next_cursor: str | None


class PatientDetail(BaseModel):
    """A patient with their visits (a practitioner sees only those with them)."""

    id: int
    name: str
    email: str
    phone: str
    added_at: Moment
    erased_at: Moment | None
    counts: Counts
    upcoming: list[StaffBooking] = Field(description="visits to come, soonest first")
    past: list[StaffBooking] = Field(description="earlier and cancelled visits, latest first")
    intake_on_file: bool
    intake: Intake | None = Field(
        description="null when there are none or the token's role may not read them "
        "(admins and practitioners may; reception may not)"
    )


class Busy(BaseModel):
    """Time a practitioner is away: ``busy`` (from an imported calendar) or ``off``."""

    kind: Literal["busy", "off"]
    start: Moment
    end: Moment
    label: str


class PractitionerSchedule(BaseModel):
    """One practitioner's bookings (cancelled ones left out) and time away in the range."""

    id: int
    name: str
    bookings: list[StaffBooking]
    busy: list[Busy]


class Schedule(BaseModel):
    """``GET /api/v1/staff/schedule``."""

    timezone: str
    start: date
    end: date
    practitioners: list[PractitionerSchedule]


class BusyTime(BaseModel):
    """``GET /api/v1/staff/busy``: one practitioner's time away in the range."""

    timezone: str
    practitioner: int
    start: date
    end: date
    busy: list[Busy]
