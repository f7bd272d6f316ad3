"""Forms of the staff's patient pages: contact details, export and erasure."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import ValidationError

from scheduler.fields import email_field, name_field, phone_field

ERASE_WORD = "ERASE"


class DetailsForm(FlaskForm):
    """A patient's name, email address and phone number, as staff correct them."""

    name = name_field("Name", "Please enter the patient's name.")
    email = email_field("Email", "Please enter the patient's email address.")
    phone = phone_field()


class ExportForm(FlaskForm):
    """Asks for the file of everything held about a patient (a button and its CSRF token)."""


def _typed_erase(form: Any, field: Any) -> None:
    """Accept only the word ERASE, so that nobody erases a patient by a stray click."""
    if (field.data or "").strip() != ERASE_WORD:
        raise ValidationError(f"Type {ERASE_WORD} in capitals to confirm.")


class EraseForm(FlaskForm):
    """Confirms erasing a patient's details by typing ERASE."""

    confirm = StringField(f"Type {ERASE_WORD} to confirm", validators=[_typed_erase])
