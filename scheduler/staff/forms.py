"""Forms of the staff area."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from scheduler.fields import single_line
from scheduler.staff.models import Role


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField(
        "Email", validators=[DataRequired("Please enter your email."), Length(max=254)]
    )
    password = PasswordField(
        "Password", validators=[DataRequired("Please enter your password."), Length(max=500)]
    )


class PasswordChangeForm(FlaskForm):
    """A new password, confirmed, with the current one."""

    current = PasswordField("Current password", validators=[DataRequired(), Length(max=500)])
    new = PasswordField(
        "New password",
        validators=[
            DataRequired(),
            Length(min=10, max=500, message="Please use at least 10 characters."),
        ],
    )
    confirm = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new", message="The two new passwords differ.")],
    )


class ImportForm(FlaskForm):
    """Calendar files to import for a practitioner."""

    practitioner = SelectField("Practitioner", coerce=int)
    files = MultipleFileField(
        "Calendar files (.ics, or .eml invites)",
        validators=[DataRequired("Please choose at least one file.")],
    )
    kind = RadioField(
        "Import as",
        choices=[
            SelectChoice("busy", "Busy time that blocks bookings"),
            SelectChoice("appointments", "Appointments from another scheduler, as bookings"),
        ],
        default="busy",
    )


class SubscriptionForm(FlaskForm):
    """An outside calendar's address to keep in sync."""

    practitioner = SelectField("Practitioner", coerce=int)
    url = StringField(
        "Calendar address (https:// or webcal://)",
        validators=[
            DataRequired("Please paste the calendar's address."),
            Length(max=2000),
            single_line,
        ],
    )
    name = StringField("Name", validators=[Optional(), Length(max=200), single_line])


ROLE_CHOICES = [
    SelectChoice(Role.ADMIN.value, "Admin: everything, including set-up and accounts"),
    SelectChoice(Role.RECEPTION.value, "Reception: every schedule, booking and patient"),
    SelectChoice(Role.PRACTITIONER.value, "Practitioner: their own schedule and patients"),
]


class AccountForm(FlaskForm):
    """A staff account's role and, for a practitioner, whose schedule it is."""

    role = SelectField("Role", choices=ROLE_CHOICES)
    practitioner = SelectField(
        "Practitioner (for a practitioner's account)",
        coerce=lambda value: int(value) if value not in (None, "") else None,
    )
    active = BooleanField("May log in", default=True)


class NewAccountForm(AccountForm):
    """A new staff account."""

    email = EmailField(
        "Email",
        validators=[DataRequired("Please enter the email address."), Length(max=254)],
    )
    password = PasswordField(
        "First password (they change it after logging in)",
        validators=[
            DataRequired("Please set a first password."),
            Length(min=10, max=500, message="Please use at least 10 characters."),
        ],
    )


class PasswordResetForm(FlaskForm):
    """A new password for someone who forgot theirs."""

    password = PasswordField(
        "New password",
        validators=[
            DataRequired("Please enter the new password."),
            Length(min=10, max=500, message="Please use at least 10 characters."),
        ],
    )


class TokenForm(FlaskForm):
    """A new personal API token's name."""

    name = StringField(
        "Name (what will use it)",
        validators=[
            DataRequired("Please name the token after what will use it."),
            Length(max=100, message="Please keep the name within 100 characters."),
            single_line,
        ],
    )


class RevokeTokenForm(FlaskForm):
    """Revoke a token (a button)."""
