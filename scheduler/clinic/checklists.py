"""What patients are told around a visit: the default checklists and the lists that apply.

The defaults are written to the database when a clinic is created (and by the migration for a
clinic that existed before); staff edit them there, for the clinic or for one treatment.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from scheduler.clinic.models import ChecklistItem, ChecklistSection, Clinic, Treatment
from scheduler.i18n import N_

DEFAULTS: dict[ChecklistSection, tuple[str, ...]] = {
    ChecklistSection.PREPARATION: (
        "Wear loose, comfortable clothing that rolls up above the elbows and knees.",
        "Eat a light meal a few hours before; do not come hungry or straight after a big meal.",
        "Avoid caffeine and alcohol on the day of your visit.",
        "Bring a list of your medications and supplements.",
    ),
    ChecklistSection.FIRST_VISIT: (
        "Your first visit starts with an in-depth consultation about your health and what you "
        "would like help with, before any treatment.",
        "Please arrive ten minutes early.",
        "We will go through the health questions you answered when booking; you can update "
        "your answers from your booking page before the visit.",
    ),
    ChecklistSection.AFTERCARE: (
        "Slight bruising, soreness or tingling at a needle site is normal and fades within a "
        "day or two.",
        "Drink plenty of water today.",
        "Rest this evening if you can; avoid hard exercise, alcohol and a heavy meal.",
        "Gentle stretching and movement, such as a short walk, help the treatment settle.",
    ),
}

# Shown on the clinic's page; not a checklist, so not edited with them.
ABOUT_TREATMENT = (
    N_("Needles usually stay in for 20 to 30 minutes while you rest."),
    N_("Most people benefit from a course of several sessions, often weekly at first."),
)


def default_items(clinic: Clinic) -> list[ChecklistItem]:
    """Return the default clinic-wide checklist items for a new clinic (not yet added)."""
    return [
        ChecklistItem(clinic=clinic, section=section, text=text, position=position)
        for section, texts in DEFAULTS.items()
        for position, text in enumerate(texts)
    ]


@dataclass(frozen=True)
class Checklist:
    """The items that apply to one treatment, by section."""

    preparation: tuple[str, ...]
    first_visit: tuple[str, ...]
    aftercare: tuple[str, ...]

    def before(self, treatment: Treatment) -> tuple[str, ...]:
        """Return what to do before a visit for ``treatment``: first-visit items first."""
        return (self.first_visit if treatment.first_visit else ()) + self.preparation


def checklist_for(session: Session, clinic: Clinic, treatment: Treatment | None) -> Checklist:
    """Return the checklist for ``treatment`` (``None``: the clinic's own).

    In each section a treatment's own items replace the clinic's; a section with no items at
    all is empty, so a clinic that deletes its aftercare advice sends none.
    """
    query = (
        select(ChecklistItem)
        .where(ChecklistItem.clinic_id == clinic.id)
        .order_by(ChecklistItem.position, ChecklistItem.id)
    )
    if treatment is None:
        query = query.where(ChecklistItem.treatment_id.is_(None))
    else:
        query = query.where(
            or_(ChecklistItem.treatment_id.is_(None), ChecklistItem.treatment_id == treatment.id)
        )
    clinic_wide: dict[ChecklistSection, list[str]] = defaultdict(list)
    own: dict[ChecklistSection, list[str]] = defaultdict(list)
    for item in session.scalars(query):
        (clinic_wide if item.treatment_id is None else own)[item.section].append(item.text)

    def section(name: ChecklistSection) -> tuple[str, ...]:
        return tuple(own[name] or clinic_wide[name])

    return Checklist(
        preparation=section(ChecklistSection.PREPARATION),
        first_visit=section(ChecklistSection.FIRST_VISIT),
        aftercare=section(ChecklistSection.AFTERCARE),
    )
