"""The clinic's public front page."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler.clinic.checklists import ABOUT_TREATMENT, checklist_for
from scheduler.clinic.models import Practitioner, Treatment
from scheduler.extensions import db
from scheduler.web import clinic_or_503

blueprint = Blueprint("clinic", __name__)


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
