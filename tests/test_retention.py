"""The retention rule: ``patients purge --years N`` erases the details of patients the clinic
has not seen for N years, as the staff area's erasure does (docs/security.md, ASVS 8.3.8)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from scheduler.audit import AuditAction, AuditEvent
from scheduler.booking.models import Booking
from scheduler.patients.models import Patient
from tests.conftest import NOW, london

YEARS = timedelta(days=365)


def purge(app, *args):
    return app.test_cli_runner().invoke(args=["patients", "purge", *args])


def by_email(session, email):
    session.rollback()
    return session.scalars(select(Patient).where(Patient.email == email)).one()


def test_patients_unseen_for_the_years_given_are_erased_and_the_others_kept(
    app, session, setup, book, clock
):
    clock.now = NOW - 7 * YEARS
    book(london("2019-11-26", "10:00"), email="gone@example.org", name="Long Gone")
    book(london("2019-11-27", "10:00"), email="back@example.org", name="Came Back")
    book(london("2019-11-28", "10:00"), email="coming@example.org", name="Coming Soon")
    clock.now = NOW - YEARS
    book(london("2025-11-25", "10:00"), email="back@example.org")
    clock.now = NOW
    book(london("2026-11-25", "10:00"), email="coming@example.org")

    dry = purge(app, "--years", "5", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would erase 1 patients")
    assert by_email(session, "gone@example.org").erased_at is None, "a dry run erases nothing"

    result = purge(app, "--years", "5")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("erased 1 patients with nothing since")
    gone = session.get(Patient, by_email(session, "erased-1@erased.invalid").id)
    assert gone.name == "Erased patient"
    assert gone.erased_at == clock.now
    bookings = session.scalars(select(Booking).where(Booking.patient_id == gone.id)).all()
    assert [b.given_name for b in bookings] == ["Erased patient"], "the booking stays, anonymised"
    assert by_email(session, "back@example.org").erased_at is None
    assert by_email(session, "coming@example.org").erased_at is None
    [entry] = session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.PATIENT_ERASED)
    ).all()
    assert (entry.actor, entry.user_id, entry.patient_id) == ("retention rule", None, gone.id)
    assert purge(app, "--years", "5").output.startswith("erased 0 patients"), "idempotent"


def test_a_patient_with_a_visit_still_to_come_is_never_erased(app, session, setup, book, clock):
    clock.now = NOW - 7 * YEARS
    book(london("2019-11-26", "10:00"), email="loyal@example.org")
    clock.now = NOW
    book(london("2026-11-26", "10:00"), email="loyal@example.org")

    result = purge(app, "--years", "1")

    assert result.output.startswith("erased 0 patients")
    assert by_email(session, "loyal@example.org").erased_at is None


def test_purge_needs_a_number_of_years_and_says_what_to_fix(app):
    for args in ([], ["--years", "0"], ["--years", "many"], ["--years", "-3"]):
        result = purge(app, *args)
        assert result.exit_code != 0, args
        assert "Error:" in result.output, args
        assert "Traceback" not in result.output, args
