"""The clinic's public front page."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler.clinic.models import Practitioner, Treatment
from scheduler.clinic.preparation import ABOUT_TREATMENT, FIRST_VISIT, PREPARATION
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
    return render_template(
        "clinic/index.html",
        clinic=clinic,
        treatments=treatments,
        practitioners=practitioners,
        preparation=PREPARATION,
        first_visit=FIRST_VISIT,
        about_treatment=ABOUT_TREATMENT,
    )
