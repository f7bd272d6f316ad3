"""Forms patients fill in to book, move and cancel."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from scheduler.booking.courses import MAX_EVERY_WEEKS, MAX_SESSIONS
from scheduler.fields import email_field, name_field, phone_field, plain_text, single_line, strip
from scheduler.i18n import lazy_gettext as _l
from scheduler.patients.forms import IntakeForm


class BookingForm(IntakeForm):
    """The patient's details, asked once a time is chosen, with the intake on a first visit."""

    full_name = name_field(_l("Full name"), _l("Please enter your name."))
    email = email_field(_l("Email"), _l("Please enter your email address."))
    phone = phone_field()
    notes = TextAreaField(
        _l("Anything the practitioner should know? (optional)"),
        filters=[strip],
        validators=[
            Length(max=2000, message=_l("Please shorten the note to 2,000 characters.")),
            plain_text,
        ],
    )
    # A course: this session and more at the same time every few weeks.
    sessions = SelectField(
        _l("Sessions"),
        choices=[SelectChoice(1, _l("Just this session"))]
        + [
            SelectChoice(n, _l("A course of %(count)d sessions", count=n))
            for n in range(2, MAX_SESSIONS + 1)
        ],
        coerce=int,
        default=1,
    )
    every_weeks = SelectField(
        _l("How often"),
        choices=[SelectChoice(1, _l("Every week"))]
        + [
            SelectChoice(n, _l("Every %(count)d weeks", count=n))
            for n in range(2, MAX_EVERY_WEEKS + 1)
        ],
        coerce=int,
        default=1,
    )


class RescheduleForm(FlaskForm):
    """Confirms moving a booking to the time in ``start``."""

    start = HiddenField(validators=[DataRequired(_l("Please choose a new time."))])


class CancelForm(FlaskForm):
    """Confirms a cancellation, with an optional reason."""

    reason = StringField(
        _l("Reason (optional)"),
        default="",
        filters=[strip],
        validators=[
            Length(max=500, message=_l("Please shorten the reason to 500 characters.")),
            single_line,
        ],
    )


class CallerForm(BookingForm):
    """A caller's details, as reception types them for a phone booking."""

    full_name = name_field(_l("Patient's full name"), _l("Please enter the patient's name."))
    email = email_field(_l("Patient's email"), _l("Please enter the patient's email address."))


# --- Staff ----------------------------------------------------------------------------------


class StatusForm(FlaskForm):
    """Marks a booking arrived, completed, a no-show, or back to confirmed."""

    status = HiddenField(validators=[DataRequired(_l("Please choose a status."))])


class StaffNotesForm(FlaskForm):
    """The staff's internal notes on a booking."""

    staff_notes = TextAreaField(
        _l("Internal notes (staff only, never shown to the patient)"),
        filters=[strip],
        validators=[
            Length(max=5000, message=_l("Please shorten the notes to 5,000 characters.")),
            plain_text,
        ],
    )


class StaffCancelForm(FlaskForm):
    """Cancels a booking for the patient or for the clinic, with a reason for the record."""

    reason = StringField(
        _l("Reason"),
        filters=[strip],
        validators=[
            DataRequired(_l("Please give a reason; it is kept with the booking.")),
            Length(max=500, message=_l("Please shorten the reason to 500 characters.")),
            single_line,
        ],
    )
    by_clinic = BooleanField(_l("The clinic cancelled (not counted against the patient)"))


class StaffRescheduleForm(FlaskForm):
    """Confirms moving a booking to ``start`` with ``practitioner``."""

    start = HiddenField(validators=[DataRequired(_l("Please choose a new time."))])
    practitioner = HiddenField()


class MoveRoomForm(FlaskForm):
    """Moves a booking to another room, chosen from those free for it."""

    room = HiddenField(validators=[DataRequired(_l("Please choose a room."))])


class ApproveForm(FlaskForm):
    """Approves a booking request (a button: only the CSRF token)."""


class DeclineForm(FlaskForm):
    """Declines a booking request, with the reason the patient is told."""

    reason = StringField(
        _l("Reason (the patient is told it)"),
        id="decline-reason",  # the cancel form on the same page has its own "reason"
        filters=[strip],
        validators=[
            DataRequired(_l("Please give a reason; the patient is told it.")),
            Length(max=500, message=_l("Please shorten the reason to 500 characters.")),
            single_line,
        ],
    )
