"""Forms patients fill in to book, move and cancel."""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    StringField,
    TelField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def plain_text(form: Any, field: Any) -> None:
    """Refuse control characters, which have no place in a name or a note."""
    if field.data and _CONTROL.search(field.data):
        raise ValidationError("Please remove the invisible control characters.")


def single_line(form: Any, field: Any) -> None:
    """Refuse line breaks and control characters in one-line fields."""
    if field.data and (_CONTROL.search(field.data) or "\n" in field.data or "\r" in field.data):
        raise ValidationError("Please keep this to one line of ordinary text.")


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class BookingForm(FlaskForm):
    """The patient's details, asked once a time is chosen."""

    full_name = StringField(
        "Full name",
        filters=[_strip],
        validators=[
            DataRequired("Please enter your name."),
            Length(max=200, message="Please shorten your name to 200 characters or fewer."),
            single_line,
        ],
    )
    email = EmailField(
        "Email",
        filters=[_strip],
        validators=[
            DataRequired("Please enter your email address."),
            Length(max=254, message="That email address is too long."),
            Email("Please enter a valid email address, like name@example.com."),
        ],
    )
    phone = TelField(
        "Phone (optional)",
        filters=[_strip],
        validators=[
            Optional(),
            Length(max=50, message="Please shorten the phone number to 50 characters."),
            Regexp(
                r"^\+?[0-9 ()\-.]{5,}$",
                message="Please enter a phone number using digits, spaces and +.",
            ),
        ],
    )
    notes = TextAreaField(
        "Anything the practitioner should know? (optional)",
        filters=[_strip],
        validators=[
            Length(max=2000, message="Please shorten the note to 2,000 characters."),
            plain_text,
        ],
    )


class RescheduleForm(FlaskForm):
    """Confirms moving a booking to the time in ``start``."""

    start = HiddenField(validators=[DataRequired("Please choose a new time.")])


class CancelForm(FlaskForm):
    """Confirms a cancellation, with an optional reason."""

    reason = StringField(
        "Reason (optional)",
        default="",
        filters=[_strip],
        validators=[
            Length(max=500, message="Please shorten the reason to 500 characters."),
            single_line,
        ],
    )


# --- Staff ----------------------------------------------------------------------------------


class StatusForm(FlaskForm):
    """Marks a booking arrived, completed, a no-show, or back to confirmed."""

    status = HiddenField(validators=[DataRequired("Please choose a status.")])


class StaffNotesForm(FlaskForm):
    """The staff's internal notes on a booking."""

    staff_notes = TextAreaField(
        "Internal notes (staff only, never shown to the patient)",
        filters=[_strip],
        validators=[
            Length(max=5000, message="Please shorten the notes to 5,000 characters."),
            plain_text,
        ],
    )


class StaffCancelForm(FlaskForm):
    """Cancels a booking for the patient or for the clinic, with a reason for the record."""

    reason = StringField(
        "Reason",
        filters=[_strip],
        validators=[
            DataRequired("Please give a reason; it is kept with the booking."),
            Length(max=500, message="Please shorten the reason to 500 characters."),
            single_line,
        ],
    )
    by_clinic = BooleanField("The clinic cancelled (not counted against the patient)")


class StaffRescheduleForm(FlaskForm):
    """Confirms moving a booking to ``start`` with ``practitioner``."""

    start = HiddenField(validators=[DataRequired("Please choose a new time.")])
    practitioner = HiddenField()
