"""Forms of the staff's patient pages: contact details, export and erasure."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import EmailField, StringField, TelField
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError

from scheduler.booking.forms import single_line

ERASE_WORD = "ERASE"


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class DetailsForm(FlaskForm):
    """A patient's name, email address and phone number, as staff correct them."""

    name = StringField(
        "Name",
        filters=[_strip],
        validators=[
            DataRequired("Please enter the patient's name."),
            Length(max=200, message="Please shorten the name to 200 characters or fewer."),
            single_line,
        ],
    )
    email = EmailField(
        "Email",
        filters=[_strip],
        validators=[
            DataRequired("Please enter the patient's email address."),
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


class ExportForm(FlaskForm):
    """Asks for the file of everything held about a patient (a button and its CSRF token)."""


def _typed_erase(form: Any, field: Any) -> None:
    """Accept only the word ERASE, so that nobody erases a patient by a stray click."""
    if (field.data or "").strip() != ERASE_WORD:
        raise ValidationError(f"Type {ERASE_WORD} in capitals to confirm.")


class EraseForm(FlaskForm):
    """Confirms erasing a patient's details by typing ERASE."""

    confirm = StringField(f"Type {ERASE_WORD} to confirm", validators=[_typed_erase])
