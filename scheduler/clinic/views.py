"""The clinic's public front page, its colours as a stylesheet, and its icon where browsers
look for it unbidden."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler.clinic.checklists import ABOUT_TREATMENT, checklist_for
from scheduler.clinic.colours import DEFAULT_BRAND_COLOUR, normalise
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.extensions import db
from scheduler.web import clinic_or_503

blueprint = Blueprint("clinic", __name__)
# How long browsers may keep /favicon.ico without asking again: a day.
ICON_MAX_AGE = 24 * 60 * 60
# How long browsers keep /clinic.css under the address the pages link (which names the
# colour, so a new colour is a new address): a day, like the icon.
COLOURS_MAX_AGE = 24 * 60 * 60


@blueprint.get("/")
def index() -> str:
    """Show the clinic: treatments, practitioners and how to prepare."""
    clinic = clinic_or_503()
    treatments = db.session.scalars(
        select(Treatment)
        .where(Treatment.active.is_(True))
        .order_by(Treatment.position, Treatment.id)
    ).all()
    practitioners = db.session.scalars(
        select(Practitioner)
        .where(Practitioner.active.is_(True))
        .options(selectinload(Practitioner.treatments))
        .order_by(Practitioner.id)
    ).all()
    checklist = checklist_for(db.session(), clinic, None)
    return render_template(
        "clinic/index.html",
        clinic=clinic,
        treatments=treatments,
        practitioners=practitioners,
        preparation=checklist.preparation,
        first_visit=checklist.first_visit,
        about_treatment=ABOUT_TREATMENT,
    )


@blueprint.get("/favicon.ico")
def favicon() -> Response:
    """Answer browsers and feed readers that ask for ``/favicon.ico`` with the icon (pages name
    theirs in ``<link rel="icon">``): the PNG, which every reader of icons understands. It is a
    kilobyte, sent from memory, so no file stays open on the answer."""
    icon = Path(current_app.static_folder or "static") / "favicon-32.png"
    answer = Response(icon.read_bytes(), mimetype="image/png")
    answer.cache_control.public = True
    answer.cache_control.max_age = ICON_MAX_AGE
    return answer


@blueprint.app_template_global()
def brand_colour(clinic: Clinic | None) -> str:
    """The clinic's colour as ``#rrggbb`` for the pages, the stylesheet and mail; re-read, so
    that a value written to the database by other means cannot put anything else there."""
    stored = normalise(clinic.brand_colour) if clinic is not None else None
    return stored or DEFAULT_BRAND_COLOUR


@blueprint.app_template_global()
def colours_version(clinic: Clinic | None) -> str:
    """The part of ``/clinic.css``'s address that changes with the clinic's colour."""
    return brand_colour(clinic)[1:]


@blueprint.get("/clinic.css")
def colours() -> Response:
    """Serve the clinic's colours as the custom properties static/style.css uses, so that the
    pages take them without a style attribute (which the content security policy refuses).

    The pages link it as ``/clinic.css?v=RRGGBB``: under that address it is cached for a day;
    under any other (a page cached from before the colour changed) browsers ask each time.
    Either way the ETag lets them ask cheaply."""
    colour = brand_colour(Clinic.get(db.session()))
    css = (
        "/* The clinic's colours, from its settings (staff area: Set-up, Clinic). */\n"
        f":root {{ --accent: {colour}; }}\n"
    )
    answer = Response(css, mimetype="text/css")
    answer.cache_control.public = True
    if request.args.get("v") == colour[1:]:
        answer.cache_control.max_age = COLOURS_MAX_AGE
    else:
        answer.cache_control.no_cache = True
    answer.add_etag()
    answer.make_conditional(request)
    return answer
