"""The form of a webhook in the staff area."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length
from wtforms.widgets import CheckboxInput, ListWidget

from scheduler.fields import strip
from scheduler.i18n import lazy_gettext as _l
from scheduler.webhooks.models import WebhookEvent
from scheduler.webhooks.operations import MAX_URL_LENGTH

EVENT_LABELS = {
    WebhookEvent.BOOKING_CREATED: _l(
        "booking.created — a booking is made (a course: each session)"
    ),
    WebhookEvent.BOOKING_RESCHEDULED: _l("booking.rescheduled — a booking moves to another time"),
    WebhookEvent.BOOKING_CANCELLED: _l("booking.cancelled — a booking is cancelled or declined"),
    WebhookEvent.BOOKING_STATUS_CHANGED: (
        _l("booking.status_changed — marked arrived, completed or a no-show, or a request approved")
    ),
}


class WebhookForm(FlaskForm):
    """Where to send the events, which ones, and whether the webhook is on."""

    url = StringField(
        _l("Address (https://…)"),
        filters=[strip],
        validators=[
            Length(
                max=MAX_URL_LENGTH,
                message=_l("The address is longer than %(most)d characters.", most=MAX_URL_LENGTH),
            )
        ],
    )
    events = SelectMultipleField(
        _l("Events to send"),
        choices=[SelectChoice(event.value, EVENT_LABELS[event]) for event in WebhookEvent],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validate_choice=True,
    )
    active = BooleanField(_l("On: send events to this address"), default=True)

    def chosen_events(self) -> list[WebhookEvent]:
        """The events ticked, valid ones only (the form has checked them)."""
        return [WebhookEvent(value) for value in self.events.data or [] if value in _VALUES]


_VALUES = {event.value for event in WebhookEvent}
