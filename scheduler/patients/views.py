"""The staff's patient pages: the list and search, a patient's record, export and erasure.

Admin and reception see every patient; a practitioner sees only the patients they have seen
or will see, and only the bookings with them. Only admin and reception change, export or
erase anything, and only admin erases.
"""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, ngettext
from flask_login import current_user

from scheduler.audit import Actor, Viewed
from scheduler.extensions import db
from scheduler.i18n import N_
from scheduler.patients.forms import DetailsForm, EraseForm, ExportForm
from scheduler.patients.models import Patient
from scheduler.patients.operations import (
    ContactDetails,
    PatientError,
    erase_patient,
    export_patient,
    patient_record,
    search_patients,
    update_details,
    visible_patient,
)
from scheduler.staff.auth import needs_confirmation, practitioners_visible_to, staff_only
from scheduler.staff.models import Role, User
from scheduler.web import clinic_or_503, note_view, now

blueprint = Blueprint("patients", __name__, url_prefix="/staff/patients")
# What a patient's record's fields are called in "Saved the patient's name, email".
FIELD_NAMES = {"name": N_("name"), "email": N_("email"), "phone": N_("phone")}

MAX_QUERY = 200
MAX_PAGE = 10_000
BOOKING_PAGE = "bookings.detail"


def _user() -> User:
    user: User = current_user._get_current_object()
    return user


def _actor() -> Actor:
    user = _user()
    return Actor(user.email, user.id)


def _scope() -> list[int] | None:
    """Return the practitioners whose patients the user may see (``None``: all patients)."""
    user = _user()
    if user.role is not Role.PRACTITIONER:
        return None
    return [p.id for p in practitioners_visible_to(db.session(), user)]


def _patient_or_404(patient_id: int) -> Patient:
    """Return a patient the user may see, or 404 (not 403: no probing for who is a patient)."""
    patient = visible_patient(db.session(), patient_id, _scope())
    if patient is None:
        abort(404)
    return patient


def _page_number() -> int:
    raw = request.args.get("page", "")
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_PAGE)):
        return min(max(int(raw), 1), MAX_PAGE)
    return 1


@blueprint.get("/")
@staff_only()
def index() -> ResponseReturnValue:
    """List patients, 50 a page, searching names, emails and phone numbers with ``?q=``."""
    clinic = clinic_or_503()
    query = request.args.get("q", "").strip()[:MAX_QUERY]
    page = _page_number()
    rows, more = search_patients(
        db.session(), query=query, practitioner_ids=_scope(), page=page, now=now()
    )
    return render_template(
        "staff/patients/index.html",
        clinic=clinic,
        rows=rows,
        query=query,
        page=page,
        more=more,
    )


def _patient_page(
    patient: Patient,
    *,
    details_form: DetailsForm | None = None,
    erase_form: EraseForm | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    clinic = clinic_or_503()
    user = _user()
    scope = _scope()
    shown = patient_record(db.session(), patient, practitioner_ids=scope, now=now())
    may_change = user.role in (Role.ADMIN, Role.RECEPTION)
    return render_template(
        "staff/patients/detail.html",
        clinic=clinic,
        record=shown,
        patient=patient,
        details_form=details_form or DetailsForm(formdata=None, obj=patient),
        export_form=ExportForm(formdata=None),
        erase_form=erase_form or EraseForm(formdata=None),
        may_change=may_change and patient.erased_at is None,
        may_export=may_change,
        may_erase=user.role is Role.ADMIN and patient.erased_at is None,
        only_mine=scope is not None,
        booking_links=BOOKING_PAGE in current_app.view_functions,
    ), status


@blueprint.get("/<int:patient_id>")
@staff_only()
def detail(patient_id: int) -> ResponseReturnValue:
    """Show a patient: contact details, visits, counts and the audit trail; the look is
    recorded in that trail."""
    patient = _patient_or_404(patient_id)
    note_view(_actor(), Viewed.PATIENT_PAGE, patient.id)
    return _patient_page(patient)


@blueprint.post("/<int:patient_id>/details")
@staff_only(Role.ADMIN, Role.RECEPTION)
def update(patient_id: int) -> ResponseReturnValue:
    """Correct a patient's name, email or phone; the trail records which fields changed."""
    patient = _patient_or_404(patient_id)
    form = DetailsForm()
    if not form.validate_on_submit():
        return _patient_page(patient, details_form=form, status=422)
    details = ContactDetails(form.name.data or "", form.email.data or "", form.phone.data or "")
    try:
        changed = update_details(
            db.session(), patient=patient, details=details, actor=_actor(), now=now()
        )
    except PatientError as exc:
        db.session.rollback()
        target = getattr(form, exc.field) if exc.field else None
        if target is not None:
            target.errors = [exc.message]
        else:
            form.form_errors.append(exc.message)
        return _patient_page(_patient_or_404(patient_id), details_form=form, status=422)
    db.session.commit()
    if changed:
        fields = ", ".join(gettext(FIELD_NAMES.get(name, name)) for name in changed)
        flash(gettext("Saved the patient's %(fields)s.", fields=fields), "info")
    else:
        flash(gettext("Nothing was changed."), "info")
    return redirect(url_for("patients.detail", patient_id=patient_id), code=303)


@blueprint.post("/<int:patient_id>/export")
@staff_only(Role.ADMIN, Role.RECEPTION)
@needs_confirmation
def export(patient_id: int) -> ResponseReturnValue:
    """Download everything held about a patient as JSON (the health answers only for an
    admin); the export is recorded."""
    patient = _patient_or_404(patient_id)
    if not ExportForm().validate_on_submit():
        abort(400)
    data = export_patient(
        db.session(),
        patient=patient,
        tz=clinic_or_503().tz,
        actor=_actor(),
        now=now(),
        with_health=_user().role is Role.ADMIN,  # as on the patient's page
    )
    db.session.commit()
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n",
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="patient-{patient_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@blueprint.post("/<int:patient_id>/erase")
@staff_only(Role.ADMIN)
@needs_confirmation
def erase(patient_id: int) -> ResponseReturnValue:
    """Anonymise a patient who has no visit to come; their bookings stay for the books."""
    patient = _patient_or_404(patient_id)
    form = EraseForm()
    if not form.validate_on_submit():
        return _patient_page(patient, erase_form=form, status=422)
    try:
        kept = erase_patient(db.session(), patient=patient, actor=_actor(), now=now())
    except PatientError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        return _patient_page(_patient_or_404(patient_id), erase_form=form, status=422)
    db.session.commit()
    flash(
        ngettext(
            "The patient's details are erased; their %(num)d booking stays, anonymised.",
            "The patient's details are erased; their %(num)d bookings stay, anonymised.",
            kept,
        ),
        "info",
    )
    return redirect(url_for("patients.detail", patient_id=patient_id), code=303)
