"""Form fields and checks shared by the forms of several areas."""

from __future__ import annotations

import re
from typing import Any

from wtforms import EmailField, StringField, TelField
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


def strip(value: str | None) -> str | None:
    """Drop the spaces around what was typed, and make browsers' CRLF line breaks plain LF."""
    if not isinstance(value, str):
        return value
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def name_field(label: str, missing: str) -> StringField:
    """A person's name: required (``missing`` says so), one line, at most 200 characters."""
    return StringField(
        label,
        filters=[strip],
        validators=[
            DataRequired(missing),
            Length(max=200, message="Please shorten the name to 200 characters or fewer."),
            single_line,
        ],
    )


def email_field(label: str, missing: str) -> EmailField:
    """A required email address (``missing`` says so when it is left out)."""
    return EmailField(
        label,
        filters=[strip],
        validators=[
            DataRequired(missing),
            Length(max=254, message="That email address is too long."),
            Email("Please enter a valid email address, like name@example.com."),
        ],
    )


def phone_field(label: str = "Phone (optional)") -> TelField:
    """An optional phone number in digits, spaces, brackets, dashes and a leading +."""
    return TelField(
        label,
        filters=[strip],
        validators=[
            Optional(),
            Length(max=50, message="Please shorten the phone number to 50 characters."),
            Regexp(
                r"^\+?[0-9 ()\-.]{5,}$",
                message="Please enter a phone number using digits, spaces and +.",
            ),
        ],
    )
