"""Forms patients fill in to join the waitlist and to leave it."""

from __future__ import annotations

from datetime import date

from flask_wtf import FlaskForm
from wtforms import SelectMultipleField
from wtforms.widgets import CheckboxInput, ListWidget

from scheduler.fields import email_field, name_field, phone_field
from scheduler.i18n import lazy_gettext as _l


class JoinForm(FlaskForm):
    """Who is waiting, and the days they could come (the choices are set per request)."""

    full_name = name_field(_l("Full name"), _l("Please enter your name."))
    email = email_field(_l("Email"), _l("Please enter your email address."))
    phone = phone_field()
    days = SelectMultipleField(
        _l("The days you could come"),
        choices=[],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        # The operation checks the days and says what is wrong with one in words.
        validate_choice=False,
    )

    def chosen_days(self) -> list[date] | None:
        """The days ticked, or ``None`` (with the field's error set) if one is not a date."""
        chosen = []
        for value in self.days.data or []:
            try:
                chosen.append(date.fromisoformat(value))
            except ValueError:
                self.days.errors = [*self.days.errors, _l("Please choose days from the list.")]
                return None
        return chosen


class LeaveForm(FlaskForm):
    """Confirms leaving the waitlist (a button and its CSRF token)."""
