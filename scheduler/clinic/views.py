"""The clinic's public front page, and its icon where browsers look for it unbidden."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, render_template
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler.clinic.checklists import ABOUT_TREATMENT, checklist_for
from scheduler.clinic.models import Practitioner, Treatment
from scheduler.extensions import db
from scheduler.web import clinic_or_503

blueprint = Blueprint("clinic", __name__)
# How long browsers may keep /favicon.ico without asking again: a day.
ICON_MAX_AGE = 24 * 60 * 60


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
