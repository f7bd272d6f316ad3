"""Shapes of the JSON the public API answers with.

The views build every successful answer through these models (:func:`shaped`), so a key added
to an answer but not here fails at once; the OpenAPI document describes answers from the same
models. They refuse unknown keys for the same reason.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, WithJsonSchema

from scheduler.booking.models import BookingStatus


def _has_offset(value: str) -> str:
    if datetime.fromisoformat(value).utcoffset() is None:
        raise ValueError("a time in the API carries its UTC offset")
    return value


# Kept as the string the view wrote (the clinic's offset, never rewritten to "Z").
Timestamp = Annotated[
    str,
    AfterValidator(_has_offset),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 with the clinic's UTC offset",
            "examples": ["2026-12-01T10:00:00+00:00"],
        }
    ),
]
Link = Annotated[str, WithJsonSchema({"type": "string", "format": "uri"})]
Zone = Annotated[str, Field(description="The clinic's IANA time zone", examples=["Europe/London"])]


# Examples for the document and the reference page (the suite checks each against its schema).
_SITE = "https://book.example-clinic.com"
_SAMPLE_ID = "q7Hc2VbK9sXw0LmP4rT8yZa1NdEf6GuJ3iOkRlSn5Bo"
_SLOT = {
    "start": "2026-12-01T10:00:00+00:00",
    "end": "2026-12-01T11:00:00+00:00",
    "practitioner": 1,
}
_LATER_SLOT = {**_SLOT, "start": "2026-12-01T11:15:00+00:00", "end": "2026-12-01T12:15:00+00:00"}
_PATIENT = {"name": "Ann Lee", "email": "ann@example.org", "phone": "07700 900123"}
_BOOKING = {
    "token": _SAMPLE_ID,
    "status": "confirmed",
    "start": "2026-12-01T10:00:00+00:00",
    "end": "2026-12-01T11:00:00+00:00",
    "timezone": "Europe/London",
    "service": 2,
    "service_name": "Follow-up treatment",
    "practitioner": 1,
    "practitioner_name": "Mei Lin",
    "room": "Garden room",
    "patient": _PATIENT,
    "notes": "Lower back pain",
    "late_cancellation": False,
    "awaiting_approval": False,
    "course": None,
    "manage_url": f"{_SITE}/b/{_SAMPLE_ID}",
    "ics_url": f"{_SITE}/b/{_SAMPLE_ID}.ics",
}


def _examples(*examples: Any) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


class Out(BaseModel):
    """An answer's shape: every key it has is described here."""

    model_config = ConfigDict(extra="forbid")


class ServiceOut(Out):
    """A treatment patients can book."""

    id: int
    name: str
    description: str
    duration_minutes: int
    first_visit: bool = Field(
        description="An initial consultation: booking it needs `intake` with `consent: true`"
    )


class ServicesOut(RootModel[list[ServiceOut]]):
    """The treatments patients can book, in the clinic's order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                [
                    {
                        "id": 1,
                        "name": "Initial consultation",
                        "description": "Your health history, a diagnosis and a first treatment.",
                        "duration_minutes": 90,
                        "first_visit": True,
                    },
                    {
                        "id": 2,
                        "name": "Follow-up treatment",
                        "description": "",
                        "duration_minutes": 60,
                        "first_visit": False,
                    },
                ]
            ]
        }
    )


class PractitionerOut(Out):
    """A practitioner with their credentials."""

    id: int
    name: str
    credentials: str
    licence: str
    bio: str
    service_ids: list[int] = Field(description="The services they give")


class PractitionersOut(RootModel[list[PractitionerOut]]):
    """The practitioners patients can book."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                [
                    {
                        "id": 1,
                        "name": "Mei Lin",
                        "credentials": "BSc (Hons) Acupuncture",
                        "licence": "MBAcC",
                        "bio": "Mei treats back pain and headaches.",
                        "service_ids": [1, 2],
                    }
                ]
            ]
        }
    )


class SlotOut(Out):
    """A free time: book it by sending its `start` and `practitioner`."""

    start: Timestamp
    end: Timestamp
    practitioner: int


class SlotsOut(Out):
    """Free times, earliest first."""

    model_config = _examples({"timezone": "Europe/London", "slots": [_SLOT, _LATER_SLOT]})

    timezone: Zone
    slots: list[SlotOut]


class PatientOut(Out):
    """Who a booking or a place on the waitlist is for: the name and phone as typed when it
    was made (the clinic's record of the patient may say otherwise, and is not shown here)."""

    name: str
    email: str
    phone: str


class CoursePlaceOut(Out):
    """Where a session stands in its course of treatment."""

    session: int | None = Field(
        description="Its number among the sessions not cancelled; null once it is cancelled"
    )
    of: int = Field(description="How many sessions of the course are not cancelled")
    attended: int = Field(description="How many of them the patient has attended")


class BookingOut(Out):
    """A booking, as its token's holder sees it."""

    model_config = _examples(_BOOKING)

    token: str = Field(description="The booking's private token: keep it secret")
    status: BookingStatus
    start: Timestamp
    end: Timestamp
    timezone: Zone
    service: int
    service_name: str
    practitioner: int
    practitioner_name: str
    room: str
    patient: PatientOut
    notes: str
    late_cancellation: bool = Field(description="Cancelled inside the clinic's late window")
    awaiting_approval: bool = Field(
        description="A request the clinic has yet to approve: it holds its time"
    )
    course: CoursePlaceOut | None = Field(description="null for a single visit")
    manage_url: Link = Field(description="The patient's page for this booking")
    ics_url: Link = Field(description="The booking as an iCalendar file")


class CourseOut(Out):
    """A course of treatment: every session was booked."""

    model_config = _examples(
        {
            "course": [
                {**_BOOKING, "course": {"session": 1, "of": 2, "attended": 0}},
                {
                    **_BOOKING,
                    "token": "Zr4Wd8Qm1Yt6Hs0Kx3Fv7Cj2Lb9Np5Ga",
                    "start": "2026-12-08T10:00:00+00:00",
                    "end": "2026-12-08T11:00:00+00:00",
                    "course": {"session": 2, "of": 2, "attended": 0},
                    "manage_url": f"{_SITE}/b/Zr4Wd8Qm1Yt6Hs0Kx3Fv7Cj2Lb9Np5Ga",
                    "ics_url": f"{_SITE}/b/Zr4Wd8Qm1Yt6Hs0Kx3Fv7Cj2Lb9Np5Ga.ics",
                },
            ],
            "sessions": 2,
            "every_weeks": 1,
        }
    )

    course: list[BookingOut] = Field(description="The sessions, in order")
    sessions: int
    every_weeks: int


class WaitlistEntryOut(Out):
    """A place on the waitlist, as its token's holder sees it."""

    model_config = _examples(
        {
            "token": _SAMPLE_ID,
            "status": "waiting",
            "service": 2,
            "service_name": "Follow-up treatment",
            "practitioner": None,
            "practitioner_name": None,
            "dates": ["2026-12-01", "2026-12-03"],
            "timezone": "Europe/London",
            "joined": "2026-11-23T08:00:00+00:00",
            "patient": _PATIENT,
            "manage_url": f"{_SITE}/waitlist/{_SAMPLE_ID}",
            "leave_url": f"{_SITE}/api/v1/waitlist/{_SAMPLE_ID}/leave",
        }
    )

    token: str = Field(description="The place's private token: keep it secret")
    status: Literal["waiting", "booked", "left", "expired"] = Field(
        description="`booked`: a time offered was booked; `expired`: every date has passed"
    )
    service: int
    service_name: str
    practitioner: int | None = Field(description="null: anyone")
    practitioner_name: str | None
    dates: list[date] = Field(description="The clinic's dates that suit")
    timezone: Zone
    joined: Timestamp
    patient: PatientOut
    manage_url: Link = Field(description="The patient's page for this place")
    leave_url: Link = Field(description="POST here to leave the waitlist")


class ErrorOut(Out):
    """What went wrong: `fields` names each field to fix (`{}` when none is to blame)."""

    model_config = _examples(
        {
            "error": "Some fields need fixing.",
            "fields": {"patient.email": "value is not a valid email address"},
        },
        {"error": "No booking has that token.", "fields": {}},
    )

    error: str = Field(description="A message a person can act on")
    fields: dict[str, str] = Field(
        description="Field (dotted path into the request, e.g. `patient.email`) to message"
    )


class SlotTakenOut(ErrorOut):
    """The time is not free; `alternatives` are the nearest free times."""

    model_config = _examples(
        {
            "error": "Sorry, that time was just taken. These are the nearest free times.",
            "fields": {
                "start": "Sorry, that time was just taken. These are the nearest free times."
            },
            "alternatives": [_LATER_SLOT],
        }
    )

    alternatives: list[SlotOut]


class ClashOut(Out):
    """A date of a course that is not free, and the nearest times that are."""

    start: Timestamp = Field(
        description="The date's usual start: name it as `of` in `repeat.instead`"
    )
    error: str
    alternatives: list[SlotOut]


class CourseClashOut(ErrorOut):
    """Some dates of the course are not free; nothing was booked."""

    model_config = _examples(
        {
            "error": "One of the 6 dates is not free: please choose another time for it.",
            "fields": {
                "start": "One of the 6 dates is not free: please choose another time for it."
            },
            "conflicts": [
                {
                    "start": "2026-12-22T10:00:00+00:00",
                    "error": "Tuesday 22 December 2026, 10:00 GMT is not free with Mei Lin.",
                    "alternatives": [
                        {
                            "start": "2026-12-22T11:15:00+00:00",
                            "end": "2026-12-22T12:15:00+00:00",
                            "practitioner": 1,
                        },
                        {
                            "start": "2026-12-22T10:00:00+00:00",
                            "end": "2026-12-22T11:00:00+00:00",
                            "practitioner": 2,
                        },
                    ],
                }
            ],
        }
    )

    conflicts: list[ClashOut]


class OpenApiDocumentOut(RootModel[dict[str, Any]]):
    """An OpenAPI 3.1 document."""


def shaped(model: type[BaseModel], data: Any) -> Any:
    """Return ``data`` as ``model`` answers it, checked against the model."""
    return model.model_validate(data).model_dump(mode="json")


class WebhookPayloadOut(Out):
    """What a webhook delivers: one booking change, with the booking as it was then."""

    model_config = _examples(
        {
            "id": "7d0f1c52-3a8e-4b59-9f77-2f1e4c6b8a10",
            "event": "booking.rescheduled",
            "created_at": "2026-11-23T08:00:00+00:00",
            "data": _BOOKING,
        }
    )

    id: str = Field(
        description="The event's id: the same on every try and replay, so a receiver can "
        "ignore a delivery it has already handled (it is also in `Webhook-Id`)"
    )
    event: Literal[
        "booking.created", "booking.rescheduled", "booking.cancelled", "booking.status_changed"
    ] = Field(description="What happened (also in `Webhook-Event`)")
    created_at: Timestamp = Field(description="When the change was made")
    data: BookingOut = Field(description="The booking after the change, as the API shows it")
