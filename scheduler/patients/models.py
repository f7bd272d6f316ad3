"""Patients, identified by their email address."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.db import Base, UTCDateTime, utcnow
from scheduler.i18n import N_
from scheduler.sealing import SealedJSON, SealedText


class Patient(Base):
    """Someone who books sessions."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Stored lower-cased so one person is one patient whatever case they type.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    phone: Mapped[str] = mapped_column(String(50), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the patient's details were erased; their bookings stay, anonymised, for the books.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    intake: Mapped[Intake | None] = relationship(cascade="all, delete-orphan", uselist=False)


class Condition(enum.StrEnum):
    """A condition that matters for needling, asked about before a first visit."""

    PREGNANCY = "pregnancy"
    PACEMAKER = "pacemaker"
    ANTICOAGULANTS = "anticoagulants"
    BLEEDING_DISORDER = "bleeding_disorder"
    NEEDLE_PHOBIA = "needle_phobia"
    EPILEPSY = "epilepsy"
    DIABETES = "diabetes"


# How the question reads to the patient, and how the flag reads to the practitioner.
# Marked for the catalogue: the intake form shows them in the patient's language.
CONDITION_QUESTIONS = {
    Condition.PREGNANCY: N_("I am or may be pregnant"),
    Condition.PACEMAKER: N_("I have a pacemaker or another implanted electrical device"),
    Condition.ANTICOAGULANTS: N_("I take anticoagulants (blood thinners such as warfarin)"),
    Condition.BLEEDING_DISORDER: N_("I have a bleeding disorder (such as haemophilia)"),
    Condition.NEEDLE_PHOBIA: N_("I am very afraid of needles"),
    Condition.EPILEPSY: N_("I have epilepsy or have had seizures"),
    Condition.DIABETES: N_("I have diabetes"),
}
CONDITION_FLAGS = {
    Condition.PREGNANCY: "pregnancy",
    Condition.PACEMAKER: "pacemaker: no electro-acupuncture",
    Condition.ANTICOAGULANTS: "anticoagulants",
    Condition.BLEEDING_DISORDER: "bleeding disorder",
    Condition.NEEDLE_PHOBIA: "needle phobia",
    Condition.EPILEPSY: "epilepsy",
    Condition.DIABETES: "diabetes",
}


class Intake(Base):
    """A patient's answers to the first-visit questions and their consent to treatment.

    One per patient, kept up to date: the patient may correct it before a visit.
    """

    __tablename__ = "intakes"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), unique=True
    )
    # The answers are sealed at rest (scheduler.sealing): a copy of the database alone holds
    # no health answer in clear.
    medications: Mapped[str] = mapped_column(SealedText, default="")
    # Condition values; a list so that a new question needs no schema change.
    conditions: Mapped[list[str]] = mapped_column(SealedJSON, default=list)
    other_conditions: Mapped[str] = mapped_column(SealedText, default="")
    consent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def flags(self) -> list[str]:
        """What the practitioner must know before needling, in the questions' order."""
        chosen = set(self.conditions or [])
        flags = [CONDITION_FLAGS[c] for c in Condition if c.value in chosen]
        if self.other_conditions.strip():
            flags.append("other: see intake")
        return flags
