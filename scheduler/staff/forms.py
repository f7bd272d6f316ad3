"""Forms of the staff area."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from scheduler.fields import single_line
from scheduler.i18n import lazy_gettext as _l
from scheduler.staff.models import Role
from scheduler.staff.operations import MIN_PASSWORD_LENGTH
from scheduler.staff.tokens import LIFETIMES

TOO_SHORT = _l("Please use at least %(count)d characters.", count=MIN_PASSWORD_LENGTH)
# A new password gets a strength meter and a "Show" button (static/password.js).
NEW_PASSWORD = {"autocomplete": "new-password", "data-strength": ""}
# The most a browser's answer from a security key takes, as JSON (they are about 1-2 KB).
KEY_ANSWER_LENGTH = 20_000
KEY_ANSWER_MISSING = _l(
    "Your browser did not send the key's answer. Use a browser with security keys switched "
    "on, or enter a code from your app instead."
)


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField(
        _l("Email"), validators=[DataRequired(_l("Please enter your email.")), Length(max=254)]
    )
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(_l("Please enter your password.")), Length(max=500)],
    )


class PasswordChangeForm(FlaskForm):
    """A new password, confirmed, with the current one."""

    current = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=500)])
    new = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(),
            Length(min=MIN_PASSWORD_LENGTH, max=500, message=TOO_SHORT),
        ],
        render_kw=NEW_PASSWORD,
    )
    confirm = PasswordField(
        _l("New password again"),
        validators=[DataRequired(), EqualTo("new", message=_l("The two new passwords differ."))],
    )


class ImportForm(FlaskForm):
    """Calendar files to import for a practitioner."""

    practitioner = SelectField(_l("Practitioner"), coerce=int)
    files = MultipleFileField(
        _l("Calendar files (.ics, or .eml invites)"),
        validators=[DataRequired(_l("Please choose at least one file."))],
    )
    kind = RadioField(
        _l("Import as"),
        choices=[
            SelectChoice("busy", _l("Busy time that blocks bookings")),
            SelectChoice("appointments", _l("Appointments from another scheduler, as bookings")),
        ],
        default="busy",
    )


class SubscriptionForm(FlaskForm):
    """An outside calendar's address to keep in sync."""

    practitioner = SelectField(_l("Practitioner"), coerce=int)
    url = StringField(
        _l("Calendar address (https:// or webcal://)"),
        validators=[
            DataRequired(_l("Please paste the calendar's address.")),
            Length(max=2000),
            single_line,
        ],
    )
    name = StringField(_l("Name"), validators=[Optional(), Length(max=200), single_line])


ROLE_CHOICES = [
    SelectChoice(Role.ADMIN.value, _l("Admin: everything, including set-up and accounts")),
    SelectChoice(Role.RECEPTION.value, _l("Reception: every schedule, booking and patient")),
    SelectChoice(Role.PRACTITIONER.value, _l("Practitioner: their own schedule and patients")),
]


class AccountForm(FlaskForm):
    """A staff account's role and, for a practitioner, whose schedule it is."""

    role = SelectField(_l("Role"), choices=ROLE_CHOICES)
    practitioner = SelectField(
        _l("Practitioner (for a practitioner's account)"),
        coerce=lambda value: int(value) if value not in (None, "") else None,
    )
    active = BooleanField(_l("May log in"), default=True)


class NewAccountForm(AccountForm):
    """A new staff account."""

    email = EmailField(
        _l("Email"),
        validators=[DataRequired(_l("Please enter the email address.")), Length(max=254)],
    )
    password = PasswordField(
        _l("First password (they change it after logging in)"),
        validators=[
            DataRequired(_l("Please set a first password.")),
            Length(min=MIN_PASSWORD_LENGTH, max=500, message=TOO_SHORT),
        ],
        render_kw=NEW_PASSWORD,
    )


class PasswordResetForm(FlaskForm):
    """A new password for someone who forgot theirs."""

    password = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(_l("Please enter the new password.")),
            Length(min=MIN_PASSWORD_LENGTH, max=500, message=TOO_SHORT),
        ],
        render_kw=NEW_PASSWORD,
    )


class TokenForm(FlaskForm):
    """A new personal API token's name."""

    name = StringField(
        _l("Name (what will use it)"),
        validators=[
            DataRequired(_l("Please name the token after what will use it.")),
            Length(max=100, message=_l("Please keep the name within 100 characters.")),
            single_line,
        ],
    )
    days = SelectField(
        _l("Works for"),
        coerce=int,
        choices=[SelectChoice(days, _l("%(days)d days", days=days)) for days in LIFETIMES],
        default=LIFETIMES[0],
    )


class RevokeTokenForm(FlaskForm):
    """Revoke a token (a button)."""


class CodeForm(FlaskForm):
    """A code from the authenticator app, or a recovery code."""

    code = StringField(
        _l("Code"),
        validators=[
            DataRequired(_l("Please enter the code.")),
            Length(max=40, message=_l("A code is 6 digits, or a recovery code of 16 letters.")),
            single_line,
        ],
        render_kw={"autocomplete": "one-time-code", "inputmode": "text", "spellcheck": "false"},
    )


class ConfirmForm(FlaskForm):
    """The password again, and a code with two-step login, before a high-value change."""

    password = PasswordField(
        _l("Your password"),
        validators=[DataRequired(_l("Please enter your password.")), Length(max=500)],
        render_kw={"autocomplete": "current-password"},
    )
    code = StringField(
        _l("Code from your app"),
        validators=[Optional(), Length(max=40), single_line],
        render_kw={"autocomplete": "one-time-code", "spellcheck": "false"},
    )
    # A security key's answer, instead of the code (static/security_key.js fills it in).
    credential = HiddenField(validators=[Optional(), Length(max=KEY_ANSWER_LENGTH)])


class KeyLoginForm(FlaskForm):
    """A security key's answer to the login's challenge (filled in by static/security_key.js)."""

    credential = HiddenField(
        validators=[DataRequired(KEY_ANSWER_MISSING), Length(max=KEY_ANSWER_LENGTH)]
    )


class AddKeyForm(FlaskForm):
    """A name for a new security key, and the key's answer (static/security_key.js)."""

    name = StringField(
        _l("A name for the key"),
        validators=[
            DataRequired(_l("Please give the key a name, such as “blue key” or “laptop”.")),
            Length(max=60, message=_l("Please keep the key's name to 60 characters.")),
            single_line,
        ],
        render_kw={"autocomplete": "off", "maxlength": 60},
    )
    credential = HiddenField(
        validators=[DataRequired(KEY_ANSWER_MISSING), Length(max=KEY_ANSWER_LENGTH)]
    )


class RemoveKeyForm(FlaskForm):
    """Remove a security key (a button)."""


class EndSessionForm(FlaskForm):
    """End a staff session (a button)."""


class ResetTwoFactorForm(FlaskForm):
    """Remove an account's second factor (a button, for an admin)."""
