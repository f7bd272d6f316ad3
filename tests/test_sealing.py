"""Health answers and two-step secrets are sealed at rest (docs/security.md 8.3.7): a copy of
the database alone holds none of them in clear, and SECRET_KEY can be rotated."""

from __future__ import annotations

from sqlalchemy import text

from scheduler.staff.models import Role
from tests.conftest import log_in, london
from tests.test_api_staff import book_first_visit

TUESDAY = "2026-11-24"


def raw_intakes(session) -> list[tuple[str, str, str]]:
    session.rollback()
    rows = session.execute(
        text("SELECT medications, conditions, other_conditions FROM intakes")
    ).all()
    return [tuple(str(value) for value in row) for row in rows]


def admin_page(app, make_user, patient_id) -> str:
    client = app.test_client()
    log_in(client, make_user(Role.ADMIN).email)
    return client.get(f"/staff/patients/{patient_id}").text


def test_the_database_holds_no_health_answer_in_clear(app, session, setup, make_user):
    booking = book_first_visit(
        session,
        setup,
        london(TUESDAY, "10:00"),
        setup.mei,
        medications="Warfarin 5 mg",
        conditions=["pacemaker"],
        other_conditions="Lymphoedema in the left arm",
    )
    [(medications, conditions, other)] = raw_intakes(session)
    for stored in (medications, conditions, other):
        assert stored.startswith("gAAAA"), "a Fernet token"
    raw = " ".join((medications, conditions, other))
    for secret in ("Warfarin", "pacemaker", "Lymphoedema"):
        assert secret not in raw
    page = admin_page(app, make_user, booking.patient_id)
    assert "Warfarin 5 mg" in page
    assert "Lymphoedema in the left arm" in page


def test_a_new_secret_key_reads_the_old_answers_through_its_fallback_and_reseals_them(
    app, session, setup, make_user, monkeypatch
):
    booking = book_first_visit(
        session, setup, london(TUESDAY, "10:00"), setup.mei, medications="Warfarin 5 mg"
    )
    before = raw_intakes(session)
    monkeypatch.setitem(app.config, "SECRET_KEY", "the-new-key")

    lost = app.test_client()
    log_in(lost, make_user(Role.ADMIN).email)
    answer = lost.get(f"/staff/patients/{booking.patient_id}")
    assert answer.status_code == 503
    assert "SECRET_KEY_FALLBACKS" in answer.text
    assert "Traceback" not in answer.text

    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", ["test-secret"])
    assert "Warfarin 5 mg" in lost.get(f"/staff/patients/{booking.patient_id}").text
    result = app.test_cli_runner().invoke(args=["db", "reseal"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Sealed 1 intakes and 0 two-step secrets again.")
    assert raw_intakes(session) != before

    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    assert "Warfarin 5 mg" in lost.get(f"/staff/patients/{booking.patient_id}").text


def test_reseal_without_the_old_key_changes_nothing_and_says_what_to_set(
    app, session, setup, monkeypatch
):
    book_first_visit(session, setup, london(TUESDAY, "10:00"), setup.mei, medications="Aspirin")
    before = raw_intakes(session)
    monkeypatch.setitem(app.config, "SECRET_KEY", "the-new-key")

    result = app.test_cli_runner().invoke(args=["db", "reseal"])

    assert result.exit_code != 0
    assert result.output.startswith("Error: nothing was changed")
    assert "SECRET_KEY_FALLBACKS" in result.output
    assert raw_intakes(session) == before
