"""The first-visit questions: what a patient takes, what matters for needling, and consent.

The answers are kept with the patient, one set each: added to when the patient answers again
online, replaced when the clinic corrects them; each change is in the audit trail without the
answers themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import gettext
from sqlalchemy.orm import Session

from scheduler.audit import Actor, AuditAction, record
from scheduler.patients.models import Condition, Intake, Patient

MAX_TEXT = 2000


class IntakeError(Exception):
    """Answers that cannot be kept, with a message for the person giving them."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class IntakeAnswers:
    """The answers as given: free text, condition codes and whether consent was given."""

    medications: str = ""
    conditions: Iterable[str] = field(default_factory=tuple)
    other_conditions: str = ""
    consent: bool = False


def check_answers(answers: IntakeAnswers | None) -> IntakeAnswers:
    """Return the answers if they can be kept, or raise what to fix (consent is required)."""
    if answers is None:
        raise IntakeError(
            gettext("A first visit needs the health questions answered and consent to treatment."),
            field="consent",
        )
    unknown = sorted(set(answers.conditions) - {c.value for c in Condition})
    if unknown:
        raise IntakeError(
            f"Unknown condition {', '.join(unknown)}; use "
            + ", ".join(c.value for c in Condition)
            + ".",
            field="conditions",
        )
    for name in ("medications", "other_conditions"):
        if len(getattr(answers, name)) > MAX_TEXT:
            raise IntakeError(
                gettext("Please keep this to %(most)s characters.", most=f"{MAX_TEXT:,}"),
                field=name,
            )
    if not answers.consent:
        raise IntakeError(
            gettext("Please give your consent to treatment; we cannot treat you without it."),
            field="consent",
        )
    return answers


def _added(kept: str, given: str) -> str:
    """Return ``kept`` with ``given`` added below it, unless it says so already."""
    given = given.strip()
    if not given or given in kept:
        return kept
    return f"{kept}\n{given}" if kept else given


def record_intake(
    session: Session, *, patient: Patient, answers: IntakeAnswers, actor: Actor, now: datetime
) -> Intake:
    """Keep ``answers`` as the patient's intake.

    Staff replace the earlier answers. Anyone else only adds to them: an online form is sent
    by whoever booked with the patient's email address, who must not be able to take a
    condition or a medicine off the patient's record; staff correct it with the patient.
    """
    check_answers(answers)
    intake = patient.intake
    given: set[str] = {c.value for c in Condition if c.value in set(answers.conditions)}
    if intake is None or actor.is_staff:
        if intake is None:
            intake = Intake(consent_at=now)
            patient.intake = intake
        intake.medications = answers.medications.strip()
        intake.other_conditions = answers.other_conditions.strip()
    else:
        given |= set(intake.conditions)
        intake.medications = _added(intake.medications, answers.medications)
        intake.other_conditions = _added(intake.other_conditions, answers.other_conditions)
    intake.conditions = [c.value for c in Condition if c.value in given]
    intake.consent_at = intake.consent_at or now
    intake.updated_at = now
    session.flush()
    record(
        session,
        actor=actor,
        action=AuditAction.INTAKE_UPDATED,
        now=now,
        patient_id=patient.id,
    )
    return intake
