"""Form fields and checks shared by the forms of several areas."""

from __future__ import annotations

import re
from typing import Any

from wtforms import EmailField, StringField, TelField
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError

from scheduler.i18n import lazy_gettext as _l

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# What else breaks a line somewhere (mail headers, calendar files, pages): newlines, the C1
# controls (NEL among them), and Unicode's line and paragraph separators.
_LINE_BREAK = re.compile(r"[\n\x80-\x9f\u2028\u2029]")


def plain_text(form: Any, field: Any) -> None:
    """Refuse control characters, which have no place in a name or a note."""
    if field.data and _CONTROL.search(field.data):
        raise ValidationError(_l("Please remove the invisible control characters."))


def single_line(form: Any, field: Any) -> None:
    """Refuse line breaks and control characters in one-line fields."""
    if field.data and (_CONTROL.search(field.data) or _LINE_BREAK.search(field.data)):
        raise ValidationError(_l("Please keep this to one line of ordinary text."))


def strip(value: str | None) -> str | None:
    """Drop the spaces around what was typed, and make browsers' CRLF line breaks plain LF."""
    if not isinstance(value, str):
        return value
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def name_field(label: Any, missing: Any) -> StringField:
    """A person's name: required (``missing`` says so), one line, at most 200 characters."""
    return StringField(
        label,
        filters=[strip],
        validators=[
            DataRequired(missing),
            Length(max=200, message=_l("Please shorten the name to 200 characters or fewer.")),
            single_line,
        ],
    )


def email_field(label: Any, missing: Any) -> EmailField:
    """A required email address (``missing`` says so when it is left out)."""
    return EmailField(
        label,
        filters=[strip],
        validators=[
            DataRequired(missing),
            Length(max=254, message=_l("That email address is too long.")),
            Email(_l("Please enter a valid email address, like name@example.com.")),
        ],
    )


def phone_field(label: Any = None) -> TelField:
    """An optional phone number in digits, spaces, brackets, dashes and a leading +."""
    return TelField(
        label or _l("Phone (optional)"),
        filters=[strip],
        validators=[
            Optional(),
            Length(max=50, message=_l("Please shorten the phone number to 50 characters.")),
            Regexp(
                r"^\+?[0-9 ()\-.]{5,}$",
                message=_l("Please enter a phone number using digits, spaces and +."),
            ),
        ],
    )
