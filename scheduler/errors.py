"""Error pages and JSON errors: a message that says what to do, never a traceback.

Under ``/api/`` every error is the API's JSON shape, in English. Anywhere else it is a calm
page in the site's layout: a heading that says what happened, a sentence that says what to do,
the clinic's phone number for those who would rather call, and a way on (the start, booking
again, back to the form that was being sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound, RequestEntityTooLarge

from scheduler.extensions import db
from scheduler.i18n import N_

MESSAGES = {
    400: N_("The request was not understood. Please go back and try again."),
    404: N_("There is nothing here. The link may be mistyped or out of date."),
    405: N_("That action is not possible on this page."),
    413: N_("What was sent is too large. Please shorten it, or send fewer or smaller files."),
    503: N_("The clinic's scheduler is not ready yet."),
}
# The heading of each error page: what happened, in a few calm words.
HEADINGS = {
    400: N_("That did not work"),
    404: N_("We cannot find that page"),
    405: N_("That did not work"),
    413: N_("That was too much to send"),
    429: N_("Please wait a little"),
    500: N_("Something went wrong"),
    503: N_("Please try again shortly"),
}
# Where a page offers to go back to the page that sent the visitor (a form that failed).
GO_BACK = frozenset({400, 413})


class UnknownLink(NotFound):
    """A link from the clinic's mail (a booking's manage page, a waitlist place, an offered
    time) that leads to nothing: mistyped, cut short by a mail program, or out of date.

    It is a 404 like any miss; its page says what such a link is and how to go on.
    """

    def __init__(self, heading: str, message: str) -> None:
        super().__init__(message)
        self.heading = heading


def unknown_booking() -> UnknownLink:
    """The error for a booking link that leads to no booking."""
    return UnknownLink(
        gettext("We cannot find this booking"),
        gettext(
            "The link may be mistyped, cut short by your mail program, or out of date. "
            "The latest mail from us about your booking has the right link; "
            "or you can book again."
        ),
    )


def unknown_waitlist_link() -> UnknownLink:
    """The error for a waitlist place's or an offered time's link that leads to nothing."""
    return UnknownLink(
        gettext("We cannot find this waitlist link"),
        gettext(
            "The link may be mistyped, cut short by your mail program, or out of date. "
            "The latest mail from us has the right link; or you can choose a time now."
        ),
    )


@dataclass(frozen=True)
class Action:
    """A way on from an error page: a link, the first one drawn as the main button."""

    text: str
    href: str


def wants_json() -> bool:
    """Tell whether the request came to the JSON API."""
    return request.path.startswith("/api/")


def _clinic() -> Any:
    """The clinic, for its name and phone on the page; None when the database cannot say."""
    from scheduler.clinic.models import Clinic

    try:
        return Clinic.get(db.session())
    except SQLAlchemyError:
        db.session.rollback()
        return None


def _referrer_on_this_site() -> str | None:
    """The page that sent this request, when it is one of this site's pages: the form that
    was posted (often to its own address), never the page that failed to load."""
    referrer = request.referrer
    if not referrer:
        return None
    parts = urlsplit(referrer)
    if parts.scheme not in ("http", "https") or parts.netloc != request.host:
        return None
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if not target.startswith("/") or target.startswith("//"):
        return None
    if request.method == "GET" and parts.path == request.path:
        return None
    return target


def _actions(status: int) -> list[Action]:
    """The ways on from an error page with ``status``."""
    actions = []
    back = _referrer_on_this_site() if status in GO_BACK else None
    if back is not None:
        actions.append(Action(gettext("Go back to the form"), back))
    if request.path.startswith("/staff/"):
        actions.append(Action(gettext("Back to the staff area"), url_for("staff.index")))
    else:
        actions.append(Action(gettext("Book a session"), url_for("booking.choose")))
    actions.append(Action(gettext("Back to the start"), url_for("clinic.index")))
    return actions


def error_response(
    status: int,
    message: str,
    headers: list[tuple[str, str]] | None = None,
    *,
    heading: str | None = None,
) -> ResponseReturnValue:
    """Return ``message`` as a JSON error under ``/api/`` and as a page elsewhere."""
    if wants_json():
        return jsonify(error=message, fields={}), status, headers or []
    # A 503 may mean the database is away: the page then goes without the clinic's details.
    clinic = _clinic() if status != 503 else None
    page = render_template(
        "errors/error.html",
        clinic=clinic,
        status=status,
        heading=heading or gettext(HEADINGS.get(status, HEADINGS[400])),
        message=message,
        actions=_actions(status),
    )
    return page, status, headers or []


def init_app(app: Flask) -> None:
    """Register the handlers on ``app``."""

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> ResponseReturnValue:
        return error_response(
            400,
            gettext(
                "This form has expired or was not sent from this site. "
                "Please reload the page and send it again."
            ),
            heading=gettext("This form has expired"),
        )

    @app.errorhandler(UnknownLink)
    def unknown_link(error: UnknownLink) -> ResponseReturnValue:
        if wants_json():
            return error_response(404, error.description or error.name)
        return error_response(404, error.description or "", heading=error.heading)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        status = error.code or 500
        # A 503 carries what to do; JSON clients get werkzeug's description of any error.
        described = status == 503 or wants_json()
        message = error.description if described else gettext(MESSAGES.get(status, error.name))
        # Keep what the error says beside its body: a 405's Allow, a 401's challenge.
        headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        return error_response(status, message or error.name, headers)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
        limit = request.max_content_length
        if wants_json() and limit:
            return error_response(413, f"The body is too large: send at most {limit:,} bytes.")
        return error_response(413, gettext(MESSAGES[413]))

    @app.errorhandler(OperationalError)
    def database_busy(error: OperationalError) -> ResponseReturnValue:
        # The database is unreachable or, on SQLite, held by a writer past the busy timeout.
        db.session.rollback()
        app.logger.warning("database unavailable: %s", error)
        return error_response(
            503,
            gettext(
                "The booking system is busy right now and nothing was changed. Please try again."
            ),
        )

    @app.errorhandler(InternalServerError)
    def server_error(error: InternalServerError) -> ResponseReturnValue:
        db.session.rollback()
        return error_response(
            500,
            gettext("Something went wrong on our side and nothing was changed. Please try again."),
        )
