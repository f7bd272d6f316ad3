"""Courses of treatment: every date checked, booked all together or not at all."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from scheduler.audit import Actor
from scheduler.booking.courses import (
    CourseUnavailable,
    Instead,
    Repeat,
    book_course,
    cancel_rest_of_course,
    course_dates,
    progress,
)
from scheduler.booking.models import Booking, BookingStatus, Course
from scheduler.booking.operations import BookingError, PatientDetails, set_status
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.notifications.models import Notification, NotificationKind
from scheduler.patients.intake import IntakeAnswers
from scheduler.staff.models import Role
from tests.conftest import NOW, csrf_token, log_in, london
from tests.test_notifications import calendar_of, dispatch, parts
from tests.test_pages import TUESDAY_10, Browser, confirm_url, count_bookings, free_times_url

ALEX = PatientDetails("Alex Rivera", "alex@example.org", "+44 7700 900111")


def _book(session, setup, *, start, repeat, practitioner=None, treatment=None, **extra):
    return book_course(
        session,
        clinic=setup.clinic,
        treatment=treatment or setup.follow_up,
        practitioner=practitioner if practitioner is not None else setup.mei,
        start=start,
        repeat=repeat,
        patient=ALEX,
        now=extra.pop("now", NOW),
        uid_host="clinic.test",
        **extra,
    )


def _count(session, model) -> int:
    session.rollback()
    return session.scalar(select(func.count()).select_from(model))


def test_six_weekly_sessions_are_booked_at_the_same_time_with_the_same_practitioner(session, setup):
    course = _book(session, setup, start=london("2026-11-24", "10:00"), repeat=Repeat(6, 1))
    session.commit()

    starts = [b.start_at for b in course.sessions]
    assert starts == [
        london(day, "10:00")
        for day in (
            "2026-11-24",
            "2026-12-01",
            "2026-12-08",
            "2026-12-15",
            "2026-12-22",
            "2026-12-29",
        )
    ]
    assert {b.practitioner_id for b in course.sessions} == {setup.mei.id}
    assert {b.patient.email for b in course.sessions} == {"alex@example.org"}
    assert (course.session_count, course.every_weeks) == (6, 1)
    # Each session has its own invite, checklist and aftercare.
    kinds = Counter(
        n.kind for n in session.scalars(select(Notification).join(Notification.booking))
    )
    assert kinds[NotificationKind.CONFIRMATION] == 6
    assert kinds[NotificationKind.AFTERCARE] == 6
    assert kinds[NotificationKind.CHECKLIST] == 6
    assert len({b.calendar_uid for b in course.sessions}) == 6


@pytest.fixture
def staff(make_user) -> Actor:
    user = make_user(Role.RECEPTION)
    return Actor(user.email, user.id)


def test_every_two_weeks_keeps_the_wall_clock_time_across_a_daylight_saving_change(
    session, setup, staff
):
    # Staff may book far ahead; British Summer Time starts on 28 March 2027.
    course = _book(
        session, setup, start=london("2027-03-16", "09:00"), repeat=Repeat(3, 2), actor=staff
    )
    session.commit()

    assert [b.start_at for b in course.sessions] == [
        london("2027-03-16", "09:00"),
        london("2027-03-30", "09:00"),
        london("2027-04-13", "09:00"),
    ]
    assert course.sessions[1].start_at.hour == 8  # 09:00 BST is 08:00 UTC


def test_a_clash_books_nothing_and_lists_the_date_with_alternatives_of_every_sort(
    session, setup, book
):
    taken = book(london("2026-12-08", "10:00"), practitioner=setup.mei)
    before = _count(session, Booking)

    with pytest.raises(CourseUnavailable) as caught:
        _book(session, setup, start=london("2026-11-24", "10:00"), repeat=Repeat(6, 1))
    session.rollback()

    assert _count(session, Booking) == before
    assert _count(session, Course) == 0
    (clash,) = caught.value.clashes
    assert clash.start == taken.start_at
    assert "Tuesday 8 December 2026, 10:00" in clash.message
    alternatives = clash.alternatives
    same_day_mei = [
        s
        for s in alternatives
        if s.practitioner_id == setup.mei.id and s.start.date() == clash.start.date()
    ]
    assert same_day_mei
    assert all(s.start != clash.start for s in same_day_mei)
    # James is free at the very time.
    assert any(s.practitioner_id == setup.james.id and s.start == clash.start for s in alternatives)
    # The day before and the day after, at the usual time.
    assert clash.start - timedelta(days=1) in {s.start for s in alternatives}
    assert clash.start + timedelta(days=1) in {s.start for s in alternatives}
    assert alternatives == sorted(alternatives)


def test_taking_an_offered_alternative_books_the_whole_course(session, setup, book):
    book(london("2026-12-08", "10:00"), practitioner=setup.mei)
    start = london("2026-11-24", "10:00")
    with pytest.raises(CourseUnavailable) as caught:
        _book(session, setup, start=start, repeat=Repeat(6, 1))
    session.rollback()
    clash = caught.value.clashes[0]
    james = next(s for s in clash.alternatives if s.practitioner_id == setup.james.id)

    course = _book(
        session,
        setup,
        start=start,
        repeat=Repeat(
            6,
            1,
            {clash.start: Instead(james.start, session.get(Practitioner, james.practitioner_id))},
        ),
    )
    session.commit()

    assert len(course.sessions) == 6
    moved = next(b for b in course.sessions if b.start_at.date() == clash.start.date())
    assert (moved.start_at, moved.practitioner_id) == (james.start, setup.james.id)
    assert all(b.practitioner_id == setup.mei.id for b in course.sessions if b is not moved)


def test_a_date_can_be_left_out(session, setup, book):
    book(london("2026-12-08", "10:00"), practitioner=setup.mei)
    start = london("2026-11-24", "10:00")

    course = _book(
        session,
        setup,
        start=start,
        repeat=Repeat(6, 1, {london("2026-12-08", "10:00"): Instead(None)}),
    )
    session.commit()

    assert course.session_count == 5
    assert london("2026-12-08", "10:00") not in {b.start_at for b in course.sessions}


def test_anyone_means_the_practitioner_free_on_the_most_dates(session, setup, book):
    book(london("2026-12-01", "10:00"), practitioner=setup.mei)

    course = book_course(
        session,
        clinic=setup.clinic,
        treatment=setup.follow_up,
        practitioner=None,
        start=london("2026-11-24", "10:00"),
        repeat=Repeat(4, 1),
        patient=ALEX,
        now=NOW,
        uid_host="clinic.test",
    )
    session.commit()

    assert {b.practitioner_id for b in course.sessions} == {setup.james.id}


def test_dates_beyond_the_horizon_are_clashes_without_alternatives(session, setup):
    with pytest.raises(CourseUnavailable) as caught:
        _book(session, setup, start=london("2026-11-24", "10:00"), repeat=Repeat(12, 1))
    session.rollback()

    late = [c for c in caught.value.clashes if not c.alternatives]
    assert late
    assert all("60 days ahead" in c.message for c in late)
    assert _count(session, Booking) == 0


@pytest.mark.parametrize(
    ("repeat", "field"),
    [
        (Repeat(1, 1), "sessions"),
        (Repeat(13, 1), "sessions"),
        (Repeat(3, 0), "every_weeks"),
        (Repeat(3, 5), "every_weeks"),
        (Repeat(3, 1, {london("2026-11-25", "10:00"): Instead(None)}), "start"),
    ],
)
def test_a_wrong_course_is_refused_with_what_to_fix(session, setup, repeat, field):
    with pytest.raises(BookingError) as caught:
        _book(session, setup, start=london("2026-11-24", "10:00"), repeat=repeat)
    session.rollback()

    assert caught.value.field == field
    assert _count(session, Booking) == 0


def test_a_first_visit_course_needs_consent_and_keeps_the_answers(session, setup):
    with pytest.raises(BookingError) as caught:
        _book(
            session,
            setup,
            start=london("2026-11-24", "10:00"),
            repeat=Repeat(2, 1),
            treatment=setup.initial,
        )
    session.rollback()
    assert caught.value.field == "consent"

    course = _book(
        session,
        setup,
        start=london("2026-11-24", "10:00"),
        repeat=Repeat(2, 1),
        treatment=setup.initial,
        intake=IntakeAnswers(medications="Warfarin", conditions=["anticoagulants"], consent=True),
    )
    session.commit()

    assert course.patient.intake.flags == ["anticoagulants"]


def test_progress_counts_sessions_attended_and_cancelling_the_rest_leaves_the_past(
    session, setup, clock, staff
):
    course = _book(session, setup, start=london("2026-11-24", "10:00"), repeat=Repeat(4, 1))
    session.commit()
    first, second, third, fourth = course.sessions

    clock.now = london("2026-11-24", "11:30")
    set_status(
        session,
        clinic=setup.clinic,
        booking=first,
        status=BookingStatus.COMPLETED,
        now=clock(),
        actor=staff,
    )
    session.commit()
    shown = progress(second)
    assert (shown.position, shown.total, shown.done) == (2, 4, 1)

    cancelled = cancel_rest_of_course(
        session, clinic=setup.clinic, booking=third, reason="Feeling better", now=clock()
    )
    session.commit()

    assert cancelled == [third, fourth]
    assert [b.status for b in course.sessions] == [
        BookingStatus.COMPLETED,
        BookingStatus.CONFIRMED,
        BookingStatus.CANCELLED,
        BookingStatus.CANCELLED,
    ]
    assert progress(second).total == 2
    assert progress(third).position is None
    with pytest.raises(BookingError):
        cancel_rest_of_course(session, clinic=setup.clinic, booking=first, now=clock())


RACERS = 8


def test_concurrent_courses_for_the_same_times_book_one_course_whole_and_nothing_else(
    app, setup, session
):
    ids = (setup.clinic.id, setup.follow_up.id, setup.mei.id)
    barrier = threading.Barrier(RACERS)

    def attempt(index: int) -> str:
        with app.app_context():
            own = db.session()
            try:
                barrier.wait(timeout=30)
                begin_write(own)
                # Each racer's course overlaps the others' on at least three dates.
                first = london("2026-11-24", "10:00") + timedelta(weeks=index % 3)
                book_course(
                    own,
                    clinic=own.get_one(Clinic, ids[0]),
                    treatment=own.get_one(Treatment, ids[1]),
                    practitioner=own.get_one(Practitioner, ids[2]),
                    start=first,
                    repeat=Repeat(4, 1),
                    patient=PatientDetails(f"Racer {index}", f"racer{index}@example.org"),
                    now=NOW,
                    uid_host="clinic.test",
                )
                own.commit()
                return "booked"
            except CourseUnavailable:
                own.rollback()
                return "taken"
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        outcomes = Counter(pool.map(attempt, range(RACERS)))

    assert outcomes == {"booked": 1, "taken": RACERS - 1}
    session.rollback()
    assert _count(session, Course) == 1
    bookings = session.scalars(select(Booking)).all()
    assert len(bookings) == 4
    assert len({b.patient_id for b in bookings}) == 1


def test_course_dates_follow_the_rhythm(setup):
    start = london("2026-11-24", "10:00")
    assert course_dates(setup.clinic, start, Repeat(3, 2)) == [
        start,
        start + timedelta(weeks=2),
        start + timedelta(weeks=4),
    ]


# --- The API ---------------------------------------------------------------------------------


def _api_course(client, setup, **changes):
    body = {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": "2026-11-24T10:00:00+00:00",
        "patient": {"name": "Alex Rivera", "email": "alex@example.org"},
        "repeat": {"count": 6, "every_weeks": 1},
    }
    body.update(changes)
    return client.post("/api/v1/bookings", json=body)


def test_the_api_books_a_course_and_shows_each_session_in_it(client, setup, session):
    response = _api_course(client, setup)

    assert response.status_code == 201
    course = response.json["course"]
    assert [s["start"] for s in course] == [
        f"2026-{day}T10:00:00+00:00"
        for day in ("11-24", "12-01", "12-08", "12-15", "12-22", "12-29")
    ]
    assert [s["course"] for s in course] == [
        {"session": n, "of": 6, "attended": 0} for n in range(1, 7)
    ]
    assert (response.json["sessions"], response.json["every_weeks"]) == (6, 1)
    one = client.get(f"/api/v1/bookings/{course[2]['token']}").json
    assert one["course"] == {"session": 3, "of": 6, "attended": 0}


def test_the_api_answers_409_with_each_conflict_and_books_once_an_alternative_is_taken(
    client, setup, book, session
):
    book(london("2026-12-15", "10:00"), practitioner=setup.mei)

    refused = _api_course(client, setup)

    assert refused.status_code == 409
    assert _count(session, Course) == 0
    (conflict,) = refused.json["conflicts"]
    assert conflict["start"] == "2026-12-15T10:00:00+00:00"
    assert "not free" in conflict["error"]
    james = next(a for a in conflict["alternatives"] if a["practitioner"] == setup.james.id)

    taken = _api_course(
        client,
        setup,
        repeat={
            "count": 6,
            "every_weeks": 1,
            "instead": [
                {
                    "of": conflict["start"],
                    "start": james["start"],
                    "practitioner": james["practitioner"],
                }
            ],
        },
    )

    assert taken.status_code == 201, taken.json
    moved = taken.json["course"][3]
    assert (moved["start"], moved["practitioner"]) == (james["start"], setup.james.id)


@pytest.mark.parametrize(
    ("repeat", "field"),
    [
        ({"count": 1}, "repeat.count"),
        ({"count": 13}, "repeat.count"),
        ({"count": 3, "every_weeks": 5}, "repeat.every_weeks"),
        ({"count": "3"}, "repeat.count"),
        ({"count": 3, "weekly": True}, "repeat.weekly"),
        (
            {"count": 3, "instead": [{"of": "2026-11-25T10:00:00+00:00", "start": None}]},
            "start",
        ),
        (
            {"count": 2, "instead": [{"of": "2026-12-01T10:00:00+00:00", "start": None}]},
            "start",
        ),
        (
            {
                "count": 3,
                "instead": [
                    {
                        "of": "2026-12-01T10:00:00+00:00",
                        "start": "2026-12-01T11:00:00+00:00",
                        "practitioner": 999,
                    }
                ],
            },
            "repeat.instead.0.practitioner",
        ),
    ],
)
def test_the_api_refuses_a_wrong_course_with_the_field_to_fix(
    client, setup, session, repeat, field
):
    response = _api_course(client, setup, repeat=repeat)

    assert response.status_code == 422
    assert field in response.json["fields"]
    assert _count(session, Booking) == 0


def test_the_api_needs_consent_for_a_first_visit_course(client, setup, session):
    response = _api_course(client, setup, service=setup.initial.id)

    assert response.status_code == 422
    assert "intake.consent" in response.json["fields"]
    assert _count(session, Booking) == 0


# --- The pages -------------------------------------------------------------------------------


@pytest.fixture
def browser(client, session) -> Browser:
    return Browser(client, session)


def test_a_new_patient_books_a_six_week_course_with_intake_and_takes_an_alternative_for_a_clash(
    browser, setup, book, session
):
    """Issue 6, done when: a six-week course in one go, intake and consent, a clash resolved."""
    book(london("2026-12-08", "10:00"), practitioner=setup.mei)  # someone else has Mei then
    week = browser.open(free_times_url(setup.initial, setup.mei))
    details = browser.open(week.slots("/book/confirm")[TUESDAY_10])
    assert "A course of treatment" in details.text

    refused = browser.submit(
        details,
        full_name="Ada Lovelace",
        email="ada@example.org",
        phone="+44 7700 900123",
        medications="Warfarin 5 mg daily",
        conditions="anticoagulants",
        consent="y",
        sessions="6",
        every_weeks="1",
    )

    assert refused.status == 409
    assert count_bookings(session) == 1  # nothing of the course was booked
    assert "One of the 6 dates is not free" in refused.text
    assert "Tuesday 8 December 2026, 10:00 GMT is not free with Mei Lin" in refused.text
    choices = {
        e.attrs["value"]
        for e in refused.elements
        if e.tag == "input" and e.attrs.get("name") == "instead-2"
    }
    with_james = f"{london('2026-12-08', '10:00').isoformat()}|{setup.james.id}"
    assert with_james in choices
    assert "skip" in choices
    assert "Tuesday 8 December 2026, 10:00 GMT with James Okafor" in refused.text

    booked = browser.submit(refused, **{"instead-2": with_james})

    assert booked.status == 303, booked.text
    manage = browser.open(booked.response.headers["Location"])
    assert "This is session 1 of 6. 0 of 6 attended." in manage.text
    sessions = session.scalars(select(Booking).order_by(Booking.start_at)).all()
    course = [b for b in sessions if b.patient.email == "ada@example.org"]
    assert len(course) == 6
    assert [b.treatment.name for b in course] == ["Initial consultation"] + [
        "Follow-up treatment"
    ] * 5
    assert [(b.start_at, b.practitioner.name) for b in course][2] == (
        london("2026-12-08", "10:00"),
        "James Okafor",
    )
    assert {b.practitioner.name for b in course[:2] + course[3:]} == {"Mei Lin"}
    assert course[0].patient.intake.flags == ["anticoagulants"]
    # Every session has its own page, linked from the others.
    for other in course[1:]:
        assert f"/b/{other.manage_token}" in {link.attrs["href"] for link in manage.links()}


def test_cancelling_the_rest_of_a_course_from_a_session_page(browser, setup, session):
    course = _book(session, setup, start=london("2026-11-24", "10:00"), repeat=Repeat(4, 1))
    session.commit()
    second = course.sessions[1]

    page = browser.open(f"/b/{second.manage_token}")
    assert "This is session 2 of 4." in page.text
    confirm = browser.open(page.link("Cancel this and the 2 later sessions"))
    assert "These 3 sessions will be cancelled" in confirm.text
    done = browser.submit(confirm, reason="Moving away")

    assert done.status == 303
    session.rollback()
    statuses = [b.status for b in session.get(Course, course.id).sessions]
    assert statuses == [BookingStatus.CONFIRMED] + [BookingStatus.CANCELLED] * 3
    first = browser.open(f"/b/{course.sessions[0].manage_token}")
    assert "This is session 1 of 1." in first.text


def test_reception_books_a_course_for_a_caller(client, setup, make_user, session):
    make_user(Role.RECEPTION)
    log_in(client, "reception@clinic.example")
    url = (
        f"/staff/bookings/new/details?service={setup.follow_up.id}&practitioner={setup.james.id}"
        f"&start={london('2026-11-24', '15:00').isoformat()}"
    )
    page = client.get(url)
    response = client.post(
        url,
        data={
            "csrf_token": csrf_token(page.text),
            "full_name": "Grace Hopper",
            "email": "grace@example.org",
            "sessions": "3",
            "every_weeks": "2",
        },
    )

    assert response.status_code == 303
    session.rollback()
    starts = [b.start_at for b in session.scalars(select(Booking).order_by(Booking.start_at))]
    assert starts == [london(day, "15:00") for day in ("2026-11-24", "2026-12-08", "2026-12-22")]


def test_a_course_with_an_impossible_length_is_refused_on_the_form(browser, setup, session):
    details = browser.open(confirm_url(setup.follow_up, TUESDAY_10, setup.mei))

    refused = browser.submit(
        details, full_name="Ada", email="ada@example.org", sessions="40", every_weeks="1"
    )

    assert refused.status == 422
    assert count_bookings(session) == 0


# --- Mail ------------------------------------------------------------------------------------


def test_each_session_has_its_own_invite_and_its_aftercare_links_to_the_next(
    app, setup, session, clock, smtp
):
    course = _book(session, setup, start=london("2026-11-24", "10:00"), repeat=Repeat(2, 1))
    session.commit()
    first, second = course.sessions

    dispatch(app)
    invites = [calendar_of(m) for m in smtp.messages() if m["Subject"].startswith("Booked")]
    uids = {str(c.walk("VEVENT")[0]["UID"]) for c in invites}
    assert uids == {first.calendar_uid, second.calendar_uid}
    booked = sorted(
        parts(m)["text/plain"].get_content()
        for m in smtp.messages()
        if m["Subject"].startswith("Booked")
    )
    assert ["session 1 of 2 of your course" in text for text in booked].count(True) == 1
    assert ["session 2 of 2 of your course" in text for text in booked].count(True) == 1

    clock.now = first.end_at + timedelta(hours=2)
    dispatch(app)
    after_first = parts(smtp.messages()[-1])["text/plain"].get_content()
    assert "Your next session is on Tuesday 1 December 2026, 10:00 GMT with Mei Lin" in after_first
    assert f"https://clinic.test/b/{second.manage_token}" in after_first
    assert "book your next" not in after_first.lower()

    clock.now = second.end_at + timedelta(hours=2)
    dispatch(app)
    after_last = parts(smtp.messages()[-1])["text/plain"].get_content()
    assert "To book your next one" in after_last


def test_the_staff_booking_page_shows_the_course_with_links_to_its_sessions(
    client, setup, make_user, session
):
    course = _book(session, setup, start=london("2026-11-24", "10:00"), repeat=Repeat(3, 2))
    session.commit()
    first, second, third = course.sessions
    make_user(Role.RECEPTION)
    log_in(client, "reception@clinic.example")

    page = client.get(f"/staff/bookings/{second.id}").text

    assert "Session 2 of 3, 0 attended" in page
    assert f'href="/staff/bookings/{first.id}"' in page
    assert f'href="/staff/bookings/{third.id}"' in page


def test_moving_the_rest_of_a_course_moves_each_later_session_by_as_many_days(
    browser, setup, session
):
    course = _book(session, setup, start=london("2026-11-24", "10:00"), repeat=Repeat(4, 1))
    session.commit()
    second = course.sessions[1]

    page = browser.open(f"/b/{second.manage_token}")
    chooser = browser.open(page.link("Change the time of this and the 2 later sessions"))
    assert "Change the time of this and the later sessions" in chooser.text
    thursday = london("2026-12-03", "15:00")
    confirm = browser.open(
        f"/b/{second.manage_token}/reschedule?rest=1&start={thursday.isoformat()}"
    )
    assert "and the 2 later sessions to the same time of day" in confirm.text
    done = browser.submit(confirm)

    assert done.status == 303
    session.rollback()
    starts = [b.start_at for b in session.get(Course, course.id).sessions]
    assert starts == [
        london("2026-11-24", "10:00"),
        london("2026-12-03", "15:00"),
        london("2026-12-10", "15:00"),
        london("2026-12-17", "15:00"),
    ]
    assert [b.sequence for b in session.get(Course, course.id).sessions] == [0, 1, 1, 1]


def test_moving_the_rest_of_a_course_onto_a_taken_time_moves_nothing(browser, setup, session, book):
    course = _book(session, setup, start=london("2026-11-24", "10:00"), repeat=Repeat(3, 1))
    session.commit()
    book(london("2026-12-10", "15:00"), practitioner=setup.mei)
    first = course.sessions[0]
    before = [b.start_at for b in course.sessions]

    confirm = browser.open(
        f"/b/{first.manage_token}/reschedule?rest=1"
        f"&start={london('2026-11-26', '15:00').isoformat()}"
    )
    refused = browser.submit(confirm)

    assert refused.status == 409
    assert "Thursday 10 December 2026, 15:00 GMT is not free with Mei Lin" in refused.text
    session.rollback()
    assert [b.start_at for b in session.get(Course, course.id).sessions] == before
