"""Forms of the staff's patient pages: contact details, export and erasure."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from scheduler.fields import email_field, name_field, phone_field, plain_text, strip
from scheduler.i18n import lazy_gettext as _l
from scheduler.patients.intake import MAX_TEXT, IntakeAnswers
from scheduler.patients.models import CONDITION_QUESTIONS, Condition

ERASE_WORD = "ERASE"


class DetailsForm(FlaskForm):
    """A patient's name, email address and phone number, as staff correct them."""

    name = name_field(_l("Name"), _l("Please enter the patient's name."))
    email = email_field(_l("Email"), _l("Please enter the patient's email address."))
    phone = phone_field()


class ExportForm(FlaskForm):
    """Asks for the file of everything held about a patient (a button and its CSRF token)."""


def _typed_erase(form: Any, field: Any) -> None:
    """Accept only the word ERASE, so that nobody erases a patient by a stray click."""
    if (field.data or "").strip() != ERASE_WORD:
        raise ValidationError(_l("Type %(word)s in capitals to confirm.", word=ERASE_WORD))


class EraseForm(FlaskForm):
    """Confirms erasing a patient's details by typing ERASE."""

    confirm = StringField(
        _l("Type %(word)s to confirm", word=ERASE_WORD), validators=[_typed_erase]
    )


class IntakeForm(FlaskForm):
    """The first-visit questions; what to require is decided by the booking (a first visit)."""

    medications = TextAreaField(
        _l("Medications and supplements you take (with doses if you know them)"),
        filters=[strip],
        validators=[
            Length(max=MAX_TEXT, message=_l("Please keep this to 2,000 characters.")),
            plain_text,
        ],
    )
    conditions = SelectMultipleField(
        _l("Do any of these apply to you?"),
        choices=[SelectChoice(c.value, _l(CONDITION_QUESTIONS[c])) for c in Condition],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validate_choice=True,
    )
    other_conditions = TextAreaField(
        _l("Anything else about your health the practitioner should know"),
        filters=[strip],
        validators=[
            Length(max=MAX_TEXT, message=_l("Please keep this to 2,000 characters.")),
            plain_text,
        ],
    )
    consent = BooleanField(
        _l(
            "I consent to acupuncture treatment. I understand it uses fine needles, that mild "
            "bruising or soreness can follow, and that I can stop at any time."
        )
    )

    def answers(self) -> IntakeAnswers:
        """The answers as the intake operation takes them."""
        return IntakeAnswers(
            medications=self.medications.data or "",
            conditions=tuple(self.conditions.data or ()),
            other_conditions=self.other_conditions.data or "",
            consent=bool(self.consent.data),
        )
