"""Forms of the clinic's set-up pages in the staff area."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import gettext
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    TimeField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    Email,
    InputRequired,
    Length,
    Optional,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from scheduler.booking.availability import WeeklyHours
from scheduler.clinic.colours import DEFAULT_BRAND_COLOUR, brand_colour_problem, normalise
from scheduler.clinic.models import ChecklistSection
from scheduler.clinic.operations import (
    LONGEST_CHECKLIST_ITEM,
    LONGEST_ROOM_KIND,
    MAX_APPROVAL_THRESHOLD,
    WEEKDAYS,
    SetupError,
    check_intervals,
    check_lead_hours,
)
from scheduler.fields import plain_text, single_line, strip
from scheduler.i18n import N_, mail_language
from scheduler.i18n import lazy_gettext as _l
from scheduler.timeutil import is_known_zone, local_to_utc, wall_time_exists

Validator = Callable[[Any, Any], None]

EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2100, 12, 31)
LONGEST_NOTICE_HOURS = 365 * 24
MAX_INTERVALS_PER_DAY = 12
MAX_CHECKLIST_ITEMS = 50


def _unix_lines(value: str | None) -> str | None:
    """Turn the CRLF line breaks browsers send from a textarea into plain newlines."""
    if not isinstance(value, str):
        return value
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def _name(label: Any, missing: Any, longest: int, too_long: Any) -> StringField:
    return StringField(
        label,
        filters=[strip],
        validators=[
            DataRequired(missing),
            Length(max=longest, message=too_long),
            single_line,
        ],
    )


def _line(label: Any, longest: int) -> StringField:
    return StringField(
        label,
        filters=[strip],
        validators=[
            Length(
                max=longest, message=_l("Please keep this to %(most)d characters.", most=longest)
            ),
            single_line,
        ],
    )


class WholeNumberField(IntegerField):
    """An integer field whose one message for text that is not a number says what to type."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Read a whole number; anything else leaves ``data`` empty with a message."""
        raw = str(valuelist[0]).strip() if valuelist else ""
        self.data = None
        if not raw:
            return
        if not re.fullmatch(r"-?[0-9]{1,9}", raw):
            raise ValueError(
                gettext(
                    "%(value)s is not a whole number; type digits only, like 15.",
                    value=repr(raw[:20]),
                )
            )
        self.data = int(raw)

    def number(self) -> int:
        """Return the number read; only call it once the form has validated."""
        if self.data is None:
            raise ValueError(f"{self.name} holds no number; validate the form first")
        return self.data


# The units :func:`between` counts in, for the catalogue.
UNITS = {"minutes": N_("minutes"), "hours": N_("hours"), "days": N_("days"), "places": N_("places")}


def between(low: int, high: int, unit: str) -> Validator:
    """Require a whole number from ``low`` to ``high`` (inclusive) in ``unit``."""

    def check(form: Any, field: Any) -> None:
        message = gettext(
            "Please enter a number of %(unit)s from %(low)d to %(high)d.",
            unit=gettext(UNITS.get(unit, unit)),
            low=low,
            high=high,
        )
        if field.errors:  # it did not read as a number: that message is enough
            raise StopValidation()
        if field.data is None:
            raise StopValidation(message)
        if not low <= field.data <= high:
            raise ValidationError(message)

    return check


def _number(label: Any, low: int, high: int, unit: str) -> WholeNumberField:
    return WholeNumberField(label, validators=[between(low, high, unit)])


def parse_lead_hours(text: str) -> tuple[int, ...]:
    """Read lead times like ``48, 2``; raise ``ValueError`` that says what to fix."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not re.fullmatch(r"[0-9]{1,6}", part):
            raise ValueError(
                gettext("%(value)s is not a whole number of hours.", value=repr(part[:20]))
            )
        values.append(int(part))
    try:
        check_lead_hours(values)
    except SetupError as exc:
        raise ValueError(exc.message) from exc
    return tuple(values)


def _lead_hours(form: Any, field: Any) -> None:
    try:
        parse_lead_hours(field.data or "")
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def timezone_name(form: Any, field: Any) -> None:
    """Refuse a name that is not an IANA time zone, and say what one looks like."""
    if field.data and not is_known_zone(field.data):
        raise ValidationError(
            gettext(
                "%(value)s is not a time zone we know. Use a name from the list, written as "
                "Region/City, such as Europe/London or America/New_York.",
                value=repr(field.data[:64]),
            )
        )


def _colour_text(value: str | None) -> str | None:
    """Write a colour typed as ``2F6F5E`` or ``#2F6F5E`` the one way, ``#2f6f5e``; nothing
    typed is the colour the pages had at first."""
    if not value:
        return DEFAULT_BRAND_COLOUR
    return normalise(value) or value


def _legible_colour(form: Any, field: Any) -> None:
    problem = brand_colour_problem(field.data or "")
    if problem is not None:
        raise ValidationError(problem)


class ClinicForm(FlaskForm):
    """The clinic's details and booking rules."""

    name = _name(
        _l("Clinic name"),
        _l("Please enter the clinic name."),
        200,
        _l("Please keep the clinic name to %(most)d characters.", most=200),
    )
    address = _line(_l("Address"), 500)
    phone = _line(_l("Phone"), 50)
    email = EmailField(
        _l("Email for patients' replies"),
        filters=[strip],
        validators=[
            Optional(),
            Length(max=254, message=_l("That email address is too long.")),
            Email(_l("Please enter a valid email address, like clinic@example.com.")),
        ],
    )
    timezone = StringField(
        _l("Time zone"),
        filters=[strip],
        validators=[DataRequired(_l("Please enter the clinic's time zone.")), timezone_name],
        render_kw={"list": "timezones", "autocomplete": "off", "spellcheck": "false"},
    )
    slot_step_minutes = _number(_l("Offer a start time every … minutes"), 5, 240, "minutes")
    min_notice = WholeNumberField(_l("Minimum notice for a booking"))
    min_notice_unit = SelectField(
        _l("Notice in"),
        choices=[SelectChoice("hours", _l("hours")), SelectChoice("minutes", _l("minutes"))],
        default="hours",
    )
    horizon_days = _number(_l("Bookings open … days ahead"), 1, 730, "days")
    late_cancel_hours = _number(
        _l("A cancellation is late within … hours of the visit"), 0, 720, "hours"
    )
    checklist_lead_hours = StringField(
        _l("Send the preparation checklist … hours before a visit"),
        filters=[strip],
        validators=[Length(max=100, message=_l("Please shorten this list.")), _lead_hours],
    )
    aftercare_delay_minutes = _number(
        _l("Send the aftercare advice … minutes after a visit ends"), 0, 7 * 24 * 60, "minutes"
    )
    approval_threshold = WholeNumberField(
        _l(
            "Ask staff to approve online bookings by patients with at least … late "
            "cancellations and no-shows"
        )
    )
    brand_colour = StringField(
        _l("Brand colour (buttons, links and the clinic's name)"),
        filters=[strip, _colour_text],
        validators=[_legible_colour],
        render_kw={"autocomplete": "off", "spellcheck": "false", "maxlength": 20},
    )

    def validate_approval_threshold(self, field: Any) -> None:
        """Allow none (never), or a count from 0 (also never) to the most the clinic may set."""
        if field.errors:
            raise StopValidation()
        if field.data is not None and not 0 <= field.data <= MAX_APPROVAL_THRESHOLD:
            raise ValidationError(
                gettext(
                    "Please enter a number from 0 to %(most)d, or leave it empty for never.",
                    most=MAX_APPROVAL_THRESHOLD,
                )
            )

    def notice_minutes(self) -> int:
        """Return the minimum notice in minutes (after validation)."""
        value: int = self.min_notice.data or 0
        return value * 60 if self.min_notice_unit.data == "hours" else value

    def validate_min_notice(self, field: Any) -> None:
        """Require a notice from none to a year, and shorter than the booking horizon."""
        if field.errors:
            raise StopValidation()
        if field.data is None:
            raise StopValidation(gettext("Please enter the notice; 0 means none."))
        hours = LONGEST_NOTICE_HOURS
        limit = hours if self.min_notice_unit.data == "hours" else hours * 60
        if not 0 <= field.data <= limit:
            raise ValidationError(gettext("Please enter a number from 0 to %(most)d.", most=limit))
        horizon = self.horizon_days.data
        if isinstance(horizon, int) and self.notice_minutes() >= horizon * 24 * 60:
            raise ValidationError(
                gettext(
                    "With this notice nothing could ever be booked: bookings open only "
                    "%(days)d days ahead. Shorten the notice or open bookings further ahead.",
                    days=horizon,
                )
            )

    def lead_hours(self) -> tuple[int, ...]:
        """Return the checklist lead times (after validation)."""
        return parse_lead_hours(self.checklist_lead_hours.data or "")


class CheckboxesField(SelectMultipleField):
    """Several choices as checkboxes, which work without script and on small screens."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class TreatmentForm(FlaskForm):
    """A treatment and who gives it."""

    name = _name(
        _l("Name"),
        _l("Please enter the name."),
        200,
        _l("Please keep the name to %(most)d characters.", most=200),
    )
    description = TextAreaField(
        _l("Description (on the booking pages)"),
        filters=[_unix_lines],
        validators=[
            Length(max=5000, message=_l("Please keep the description to 5,000 characters.")),
            plain_text,
        ],
    )
    duration_minutes = _number(_l("Length in minutes"), 5, 480, "minutes")
    buffer_minutes = _number(_l("Buffer after it, in minutes"), 0, 240, "minutes")
    first_visit = BooleanField(_l("A first visit (asks the health questions when booking)"))
    position = _number(_l("Position in lists (smaller first)"), 0, 10_000, "places")
    room_kind = SelectField(_l("Needs a room of the kind"), validate_choice=False)
    practitioners = CheckboxesField(_l("Given by"), coerce=int)

    def offer_room_kinds(self, kinds: Iterable[str]) -> None:
        """Offer "any room" and ``kinds`` (the kinds the clinic's rooms have)."""
        self.room_kind.choices = [SelectChoice("", gettext("Any room"))] + [
            SelectChoice(kind, kind) for kind in kinds
        ]

    def validate_room_kind(self, field: Any) -> None:
        """Refuse a kind no room has: a typo would make the treatment impossible to book."""
        offered = {choice.value for choice in field.choices or []}
        if field.data and field.data not in offered:
            raise ValidationError(
                gettext(
                    "Choose a kind of room from the list; give a room that kind under Rooms first."
                )
            )


class PractitionerForm(FlaskForm):
    """A practitioner and the treatments they give."""

    name = _name(
        _l("Name"),
        _l("Please enter the name."),
        200,
        _l("Please keep the name to %(most)d characters.", most=200),
    )
    email = EmailField(
        _l("Email"),
        filters=[strip],
        validators=[
            DataRequired(_l("Please enter the practitioner's email.")),
            Length(max=254, message=_l("That email address is too long.")),
            Email(_l("Please enter a valid email address, like name@example.com.")),
        ],
    )
    credentials = _line(_l("Credentials (e.g. BSc (Hons) Acupuncture)"), 300)
    licence = _line(_l("Licence or membership (e.g. MBAcC)"), 300)
    bio = TextAreaField(
        _l("About them (on the clinic's page)"),
        filters=[_unix_lines],
        validators=[
            Length(max=5000, message=_l("Please keep this to 5,000 characters.")),
            plain_text,
        ],
    )
    treatments = CheckboxesField(_l("Gives"), coerce=int)


class RoomForm(FlaskForm):
    """A room's name and what kind of room it is."""

    name = _name(
        _l("Room name"),
        _l("Please enter the room name."),
        100,
        _l("Please keep the room name to %(most)d characters.", most=100),
    )
    kind = StringField(
        _l("Kind of room (optional)"),
        filters=[strip],
        validators=[
            Length(
                max=LONGEST_ROOM_KIND,
                message=_l("Please keep the kind to %(most)d characters.", most=LONGEST_ROOM_KIND),
            ),
            single_line,
        ],
        render_kw={"list": "room-kinds", "autocomplete": "off"},
    )


_TIME = r"([0-9]{1,2})[:.]([0-9]{2})"
_INTERVAL = re.compile(rf"{_TIME}\s*[-–—]\s*{_TIME}")


def _time_of_day(hours: str, minutes: str) -> time:
    hour, minute = int(hours), int(minutes)
    if hour > 23 or minute > 59:
        raise ValueError(
            gettext("%(time)s is not a time of day; use 00:00 to 23:59.", time=f"{hours}:{minutes}")
        )
    return time(hour, minute)


def parse_day_hours(text: str) -> list[tuple[time, time]]:
    """Read one day's hours like ``09:00-13:00, 14:00-18:00``; raise ``ValueError`` with what to
    fix. Empty text is a day off."""
    intervals = []
    for part in re.split(r"[,;\n]", text):
        part = part.strip()
        if not part:
            continue
        match = _INTERVAL.fullmatch(part)
        if match is None:
            raise ValueError(
                gettext(
                    "%(value)s is not a time range; write it like 09:00-13:00.",
                    value=repr(part[:30]),
                )
            )
        start = _time_of_day(match.group(1), match.group(2))
        end = _time_of_day(match.group(3), match.group(4))
        intervals.append((start, end))
    if len(intervals) > MAX_INTERVALS_PER_DAY:
        raise ValueError(
            gettext("Please give at most %(most)d intervals a day.", most=MAX_INTERVALS_PER_DAY)
        )
    try:
        check_intervals(intervals)
    except SetupError as exc:
        raise ValueError(exc.message) from exc
    return intervals


def _day_hours(form: Any, field: Any) -> None:
    try:
        parse_day_hours(field.data or "")
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def _day(name: Any) -> StringField:
    return StringField(
        name,
        filters=[strip],
        validators=[Length(max=300, message=_l("Please shorten this.")), _day_hours],
        render_kw={"placeholder": _l("Not working"), "spellcheck": "false"},
    )


class HoursForm(FlaskForm):
    """A practitioner's weekly hours: each day's intervals in the clinic's wall-clock time."""

    monday = _day(_l("Monday"))
    tuesday = _day(_l("Tuesday"))
    wednesday = _day(_l("Wednesday"))
    thursday = _day(_l("Thursday"))
    friday = _day(_l("Friday"))
    saturday = _day(_l("Saturday"))
    sunday = _day(_l("Sunday"))

    def day_fields(self) -> list[StringField]:
        """Return the days' fields, Monday first."""
        return [self[name.lower()] for name in WEEKDAYS]

    def weekly(self) -> list[WeeklyHours]:
        """Return the hours entered (after validation)."""
        return [
            WeeklyHours(weekday, start, end)
            for weekday, field in enumerate(self.day_fields())
            for start, end in parse_day_hours(field.data or "")
        ]


def hours_text(intervals: Iterable[tuple[time, time]]) -> str:
    """Write one day's hours the way :func:`parse_day_hours` reads them."""
    return ", ".join(f"{start:%H:%M}-{end:%H:%M}" for start, end in sorted(intervals))


def _within_years(form: Any, field: Any) -> None:
    if field.data is not None and not EARLIEST_DAY <= field.data <= LATEST_DAY:
        raise ValidationError(gettext("Please pick a date between 2000 and 2100."))


class TimeOffForm(FlaskForm):
    """A stretch of time off, in the clinic's time; times left empty mean whole days."""

    start_date = DateField(
        _l("From (date)"),
        validators=[InputRequired(_l("Please enter the first day.")), _within_years],
    )
    start_time = TimeField(_l("From (time; empty: start of the day)"), validators=[Optional()])
    end_date = DateField(
        _l("Until (date)"),
        validators=[InputRequired(_l("Please enter the last day.")), _within_years],
    )
    end_time = TimeField(_l("Until (time; empty: end of the day)"), validators=[Optional()])
    reason = _line(_l("Reason (only staff see it)"), 200)
    despite_bookings = BooleanField(
        _l("Add it anyway; I will move or cancel those bookings myself")
    )

    def __init__(self, *args: Any, tz: ZoneInfo, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tz = tz

    def _instant(self, day: date, wall: time | None) -> datetime:
        if wall is None:
            return local_to_utc(day, time(0), self.tz)
        if not wall_time_exists(day, wall, self.tz):
            raise ValidationError(
                gettext(
                    "%(time)s does not exist on that day: the clocks go forward. "
                    "Please pick another time.",
                    time=f"{wall:%H:%M}",
                )
            )
        return local_to_utc(day, wall, self.tz)

    def start(self) -> datetime:
        """Return when the time off starts, in UTC (after validation)."""
        return self._instant(self.start_date.data, self.start_time.data)

    def end(self) -> datetime:
        """Return when the time off ends, in UTC (after validation)."""
        if self.end_time.data is None:
            return local_to_utc(self.end_date.data + timedelta(days=1), time(0), self.tz)
        return self._instant(self.end_date.data, self.end_time.data)

    def validate_start_time(self, field: Any) -> None:
        """Refuse a wall time the clocks skip (the field is only checked when filled in)."""
        if self.start_date.data is not None:
            self._instant(self.start_date.data, field.data)

    def validate_end_time(self, field: Any) -> None:
        """Refuse a wall time the clocks skip (the field is only checked when filled in)."""
        if self.end_date.data is not None:
            self._instant(self.end_date.data, field.data)

    def validate(self, extra_validators: Any = None) -> bool:
        """Check each field, then that the time off ends after it starts."""
        if not super().validate(extra_validators):
            return False
        if self.end() <= self.start():
            self.end_date.errors.append(gettext("The time off must end after it starts."))
            return False
        return True


def _items(form: Any, field: Any) -> None:
    lines = checklist_lines(field.data or "")
    if len(lines) > MAX_CHECKLIST_ITEMS:
        raise ValidationError(
            gettext("Please keep this to %(most)d items.", most=MAX_CHECKLIST_ITEMS)
        )
    for number, line in enumerate(lines, start=1):
        if len(line) > LONGEST_CHECKLIST_ITEM:
            raise ValidationError(
                gettext(
                    "Item %(number)d has %(length)d characters; please keep each item to %(most)d.",
                    number=number,
                    length=len(line),
                    most=LONGEST_CHECKLIST_ITEM,
                )
            )


def checklist_lines(text: str) -> list[str]:
    """Return one checklist item per non-blank line, trimmed."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _section(label: Any) -> TextAreaField:
    return TextAreaField(
        label,
        filters=[_unix_lines],
        validators=[
            Length(max=60_000, message=_l("Please shorten this list.")),
            plain_text,
            _items,
        ],
        render_kw={"rows": 6},
    )


class ChecklistForm(FlaskForm):
    """The three sections of a checklist, one item per line."""

    preparation = _section(_l("Before every visit"))
    first_visit = _section(_l("Before a first visit (added before the above)"))
    aftercare = _section(_l("After a visit"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The items go out in the mail's language, whatever the page's.
        for _, field in self.sections():
            field.render_kw = {**(field.render_kw or {}), "lang": mail_language()}

    def sections(self) -> list[tuple[ChecklistSection, TextAreaField]]:
        """Return each section with its field."""
        return [(section, self[section.value]) for section in ChecklistSection]

    def items(self, section: ChecklistSection) -> list[str]:
        """Return one section's items (after validation)."""
        return checklist_lines(self[section.value].data or "")
