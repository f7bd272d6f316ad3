"""Languages: which one a page or a message is in, its catalogue, and dates written its way.

A request is answered in the language its visitor chose with the switch in the page footer (a
cookie), else the best of the browser's ``Accept-Language``, else the clinic's default
(``BABEL_DEFAULT_LOCALE``, English). The JSON API always answers in English: integrators match
its messages. Work outside a request (the dispatcher's mail, commands) uses the clinic's default.

The catalogues are the ``.po`` files under ``scheduler/translations/``, compiled in memory the
first time a process needs a language; there are no ``.mo`` files. Why: the documented install
(docs/deploy.md) is ``pip install -e .`` into a checkout that root owns and the app only reads,
run by gunicorn and the dispatcher, and ``make test``, a bare ``pytest`` and the browser tests'
servers start the app in still other ways. A ``pybabel compile`` step would have to be added to
each of them and could be forgotten or go stale; compiling a catalogue of a few hundred messages
takes milliseconds, and the ``.po`` stays the one source. ``make translations`` extracts new
messages into the ``.po`` files; tests/test_i18n.py fails while any is untranslated.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_skeleton, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import (
    Blueprint,
    Flask,
    current_app,
    has_app_context,
    has_request_context,
    redirect,
    request,
)
from flask.typing import ResponseReturnValue
from flask_babel import Babel, Domain, force_locale, get_locale, gettext
from flask_babel.speaklater import LazyString
from markupsafe import escape
from werkzeug.utils import cached_property

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# The languages the pages and mail are written in, each named in itself for the switch.
LANGUAGES = {"en": "English", "de": "Deutsch"}
DEFAULT = "en"
COOKIE = "lang"
COOKIE_DAYS = 365

blueprint = Blueprint("i18n", __name__)


class _LazyText(LazyString):  # type: ignore[misc]
    """Flask-Babel's lazy string, escaped in templates like any text (its own ``__html__``
    marks it safe, which would leave a form's "patient's" unescaped, unlike before)."""

    def __html__(self) -> str:
        return str(escape(str(self)))


def lazy_gettext(string: str, **variables: Any) -> Any:
    """Translate ``string`` when it is shown, in the language of that page (form labels and
    messages, made once at import)."""
    return _LazyText(gettext, string, **variables)


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue without translating it yet (see :func:`label`)."""
    return message


def load_catalogue(language: str) -> NullTranslations:
    """Compile ``language``'s ``.po`` file in memory (fuzzy entries left out, as ``pybabel
    compile`` leaves them); English, the language of the code, needs none."""
    po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    if not po.is_file():
        return NullTranslations()
    with po.open("rb") as source:
        catalogue = read_po(source, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return Translations(compiled, domain="messages")


class _Catalogues(Domain):  # type: ignore[misc]  # Flask-Babel has no type hints
    """Flask-Babel's ``messages`` domain, read from the ``.po`` files instead of ``.mo``."""

    def get_translations(self) -> NullTranslations:
        locale = get_locale()
        if locale is None:  # outside an app context
            return NullTranslations()
        language = locale.language
        cached = self.cache.get(language)
        if cached is None:
            cached = self.cache[language] = load_catalogue(language)
        return cached


class _Babel(Babel):  # type: ignore[misc]
    @cached_property
    def domain_instance(self) -> Domain:
        return _Catalogues()


babel = _Babel()


def default_language() -> str:
    """The clinic's language: ``BABEL_DEFAULT_LOCALE`` if it is one we have, else English."""
    if not has_app_context():
        return DEFAULT
    configured = str(current_app.config.get("BABEL_DEFAULT_LOCALE") or DEFAULT)
    return configured if configured in LANGUAGES else DEFAULT


def select_language() -> str:
    """Flask-Babel's locale selector: the switch's cookie, the browser's choice, the default."""
    if not has_request_context() or request.path.startswith("/api/"):
        return default_language()
    chosen = request.cookies.get(COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    # In the browser's order of preference, by primary tag: "de-AT" is German. (Werkzeug's
    # best_match would prefer a later "en" that matches exactly to "de-AT".)
    for value, _quality in request.accept_languages:
        primary = value.replace("_", "-").split("-")[0].lower()
        if primary in LANGUAGES:
            return primary
    return default_language()


def current_language() -> str:
    """The language of what is being written now."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT


def mail_language() -> str:
    """The language patient mail is written in: the clinic's default.

    The language the patient booked in is not stored yet (it would need a ``locale`` column on
    bookings and waitlist entries), so mail, written by the dispatcher outside any request,
    goes in the clinic's language; a preview in the staff area shows the same.
    """
    return default_language()


def in_mail_language() -> Any:
    """A context in which gettext and the date filters write in :func:`mail_language`."""
    return force_locale(mail_language())


def greeting(name: str) -> str:
    """Open a message to ``name`` (one clean line): "Hello Ann,", or "Hello there," if empty."""
    return gettext("Hello %(name)s,", name=name) if name else gettext("Hello there,")


# --- Dates and times -------------------------------------------------------------------------

# English keeps the wording it had before there were languages ("Tuesday 24 November 2026,
# 10:00 GMT"); German follows its own conventions ("Dienstag, 24. November 2026"). Any other
# language would take Babel's skeletons for its locale.
DATE_PATTERNS = {
    "en": {
        "day": "EEEE d MMMM y",
        "day_no_year": "EEEE d MMMM",
        "day_month_year": "d MMMM y",
        "short_day": "EEE d MMM",
    },
    "de": {
        "day": "EEEE, d. MMMM y",
        "day_no_year": "EEEE, d. MMMM",
        "day_month_year": "d. MMMM y",
        "short_day": "EEE, d. MMM",
    },
}
SKELETONS = {
    "day": "yMMMMEEEEd",
    "day_no_year": "MMMMEEEEd",
    "day_month_year": "yMMMMd",
    "short_day": "MMMEd",
}


def _locale() -> Locale:
    return Locale.parse(current_language())


def format_day(day: date | datetime, style: str = "day") -> str:
    """Write a day (a local date, or an aware datetime already in the clinic's zone):
    ``day`` (Tuesday 24 November 2026), ``day_no_year``, ``day_month_year`` (24 November 2026)
    or ``short_day`` (Tue 24 Nov)."""
    locale = _locale()
    pattern = DATE_PATTERNS.get(locale.language, {}).get(style)
    if pattern is None:
        return str(format_skeleton(SKELETONS[style], day, locale=locale))
    return str(format_date(day, pattern, locale=locale))


def weekday_name(weekday: int, width: str = "wide") -> str:
    """Name a weekday (0 is Monday) in the page's language: ``wide`` (Tuesday) or
    ``abbreviated`` (Tue)."""
    return str(_locale().days["format"][width][weekday])


def format_clock(moment: datetime) -> str:
    """Write the wall-clock time of ``moment`` (already in the clinic's zone): ``10:00``."""
    locale = _locale()
    pattern = "HH:mm" if locale.language in DATE_PATTERNS else "short"
    # Babel would move an aware time to its ``tzinfo`` argument (UTC when not given).
    return str(format_time(moment.replace(tzinfo=None), pattern, locale=locale))


def format_local(moment: datetime, tz: Any, *, with_zone: bool = True) -> str:
    """Write ``moment`` in the zone ``tz`` for people: ``Tuesday 24 November 2026, 10:00 GMT``
    in English, ``Dienstag, 24. November 2026, 10:00 GMT`` in German."""
    local = moment.astimezone(tz)
    text = f"{format_day(local)}, {format_clock(local)}"
    if with_zone:
        text += f" {local.tzname()}"
    return text


def format_minutes(value: int) -> str:
    """Say a number of minutes the way people do: ``90`` is ``1 h 30 min`` in English."""
    hours, rest = divmod(value, 60)
    if hours and rest:
        return gettext("%(hours)d h %(minutes)d min", hours=hours, minutes=rest)
    if hours:
        return gettext("%(hours)d h", hours=hours)
    return gettext("%(minutes)d min", minutes=rest)


# What statuses, kinds and roles are called on pages: the English word (an enum's value with
# "_" as a space, or as a hyphen where a page writes it so) and its message.
LABELS = {
    "confirmed": N_("confirmed"),
    "arrived": N_("arrived"),
    "completed": N_("completed"),
    "no show": N_("no show"),
    "no-show": N_("no-show"),
    "cancelled": N_("cancelled"),
    "admin": N_("admin"),
    "reception": N_("reception"),
    "practitioner": N_("practitioner"),
    # A patient's details, as the audit trail names those changed.
    "name": N_("name"),
    "email": N_("email"),
    "phone": N_("phone"),
    # Patient mail and webhook deliveries: their kinds, states and the outcome of each try.
    "confirmation": N_("confirmation"),
    "checklist": N_("checklist"),
    "update": N_("update"),
    "cancellation": N_("cancellation"),
    "aftercare": N_("aftercare"),
    "waitlist offer": N_("waitlist offer"),
    "waitlist gone": N_("waitlist gone"),
    "pending": N_("pending"),
    "sending": N_("sending"),
    "sent": N_("sent"),
    "failed": N_("failed"),
    "skipped": N_("skipped"),
    "retrying": N_("retrying"),
    "delivered": N_("delivered"),
}


# What each entry of the audit trail is called (scheduler.audit.AuditAction's values, read as
# English words), and the recorded names of those who act without a staff account
# (scheduler.audit's actors).
AUDIT_ACTIONS = {
    "booked": N_("Booked"),
    "rescheduled": N_("Rescheduled"),
    "cancelled": N_("Cancelled"),
    "status_changed": N_("Status changed"),
    "notes_changed": N_("Notes changed"),
    "imported": N_("Imported"),
    "patient_updated": N_("Patient updated"),
    "patient_exported": N_("Patient exported"),
    "record_viewed": N_("Record viewed"),
    "patient_erased": N_("Patient erased"),
    "intake_updated": N_("Intake updated"),
    "room_changed": N_("Room changed"),
    "approved": N_("Approved"),
    "declined": N_("Declined"),
}
ACTORS = {
    "patient": N_("patient"),
    "calendar import": N_("calendar import"),
    "retention rule": N_("retention rule"),
}


def audit_action(value: Any) -> str:
    """Name an audit trail entry's action (an enum or its value) in the page's language."""
    text = str(getattr(value, "value", value))
    return gettext(AUDIT_ACTIONS[text]) if text in AUDIT_ACTIONS else text.replace("_", " ")


def audit_actor(recorded: str) -> str:
    """Name who acted: a staff account's email as recorded, or the patient, an import or the
    retention rule in the page's language."""
    return gettext(ACTORS[recorded]) if recorded in ACTORS else recorded


def label(value: Any, joiner: str = " ") -> str:
    """Name a status, kind or role (an enum or its value) for people, in the page's language:
    ``no_show`` is "no show" in English (or "no-show" with ``joiner="-"``)."""
    text = str(getattr(value, "value", value)).replace("_", joiner)
    return gettext(LABELS[text]) if text in LABELS else text


# --- The switch --------------------------------------------------------------------------------


def here() -> str:
    """The path and query of this request, for the switch to come back to."""
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


@blueprint.get("/language/<code>")
def switch(code: str) -> ResponseReturnValue:
    """Remember ``code`` as this browser's language and go back to the page it came from."""
    from scheduler.web import safe_next  # the web helpers write the audit trail, which uses this

    response = redirect(safe_next(request.args.get("next"), "/"), code=303)
    if code in LANGUAGES:
        response.set_cookie(
            COOKIE,
            code,
            max_age=int(timedelta(days=COOKIE_DAYS).total_seconds()),
            secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
            httponly=True,
            samesite="Lax",
        )
    return response


def _template_globals() -> dict[str, Any]:
    return {
        "current_language": current_language(),
        "languages": LANGUAGES,
        "here": here,
        "label": label,
        "mail_language": mail_language(),
        "weekday_name": weekday_name,
        "audit_action": audit_action,
        "audit_actor": audit_actor,
    }


def init_app(app: Flask) -> None:
    """Set up Flask-Babel on ``app``, the switch's page, and gettext in the templates."""
    babel.init_app(app, locale_selector=select_language)
    # Messages are extracted with their whitespace collapsed (babel.cfg: trimmed).
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.context_processor(_template_globals)
    app.register_blueprint(blueprint)
