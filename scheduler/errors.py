"""Error pages and JSON errors: a message that says what to do, never a traceback."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from scheduler.extensions import db
from scheduler.i18n import N_

MESSAGES = {
    400: N_("The request was not understood. Please go back and try again."),
    404: N_("There is nothing here. The link may be mistyped or out of date."),
    405: N_("That action is not possible on this page."),
    413: N_("What was sent is too large. Please shorten it, or send fewer or smaller files."),
    503: N_("The clinic's scheduler is not ready yet."),
}


def wants_json() -> bool:
    """Tell whether the request came to the JSON API."""
    return request.path.startswith("/api/")


def error_response(
    status: int, message: str, headers: list[tuple[str, str]] | None = None
) -> ResponseReturnValue:
    """Return ``message`` as a JSON error under ``/api/`` and as a page elsewhere."""
    if wants_json():
        return jsonify(error=message, fields={}), status, headers or []
    page = render_template("errors/error.html", status=status, message=message)
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
        )

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
