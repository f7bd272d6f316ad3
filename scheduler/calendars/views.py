"""Calendar addresses: a practitioner's subscription feed."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, request
from sqlalchemy import select

from scheduler.calendars.export import practitioner_feed
from scheduler.calendars.feeds import feed_bookings, feed_version, feed_window
from scheduler.clinic.models import Practitioner
from scheduler.extensions import db
from scheduler.web import clinic_or_503, now, token_shaped

blueprint = Blueprint("calendars", __name__)


@blueprint.get("/feeds/<token>.ics")
def feed(token: str) -> Response:
    """Serve a practitioner's feed; a poll with a current ETag or date gets 304."""
    clinic = clinic_or_503()
    if not token_shaped(token):
        abort(404)
    practitioner = db.session.scalars(
        select(Practitioner).where(Practitioner.feed_token == token)
    ).first()
    if practitioner is None:
        abort(404)
    moment = now()
    version = feed_version(db.session(), clinic, practitioner, moment)
    response = Response(mimetype="text/calendar")
    response.set_etag(version.etag)
    response.last_modified = version.last_modified
    response.cache_control.private = True
    response.cache_control.no_cache = True
    if request.if_none_match.contains(version.etag) or (
        not request.if_none_match
        and request.if_modified_since is not None
        and version.last_modified is not None
        and version.last_modified.replace(microsecond=0) <= request.if_modified_since
    ):
        response.status_code = 304
        return response
    first, last = feed_window(clinic, moment)
    response.set_data(
        practitioner_feed(
            clinic,
            practitioner,
            feed_bookings(db.session(), practitioner, first, last),
            base_url=current_app.config["BASE_URL"],
        )
    )
    response.headers["Content-Disposition"] = 'inline; filename="sessions.ics"'
    return response
