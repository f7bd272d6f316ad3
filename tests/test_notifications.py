"""Patient mail end to end: what a booking change queues, what the dispatcher sends through a
real SMTP server (aiosmtpd on loopback), and that each message goes exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from flask import Flask
from icalendar import Calendar
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import (
    cancel_booking,
    reschedule_booking,
)
from scheduler.clinic.models import ChecklistItem, ChecklistSection
from scheduler.extensions import db
from scheduler.mail import mailer_from
from scheduler.notifications.dispatch import Settings, claim, deliver, release, send_due
from scheduler.notifications.models import (
    AttemptOutcome,
    Notification,
    NotificationKind,
    NotificationStatus,
)
from scheduler.staff.models import Role
from tests.conftest import log_in, london, token_of
from tests.smtp_server import Inbox, free_port, smtp_server

Kind = NotificationKind


@pytest.fixture
def move(session: Session, setup, clock):
    """Reschedule through the real operation and commit: ``move(booking, start)``."""

    def make(booking: Booking, start: datetime) -> None:
        reschedule_booking(session, clinic=setup.clinic, booking=booking, start=start, now=clock())
        session.commit()

    return make


@pytest.fixture
def cancel(session: Session, setup, clock):
    """Cancel through the real operation and commit: ``cancel(booking)``."""

    def make(booking: Booking) -> None:
        cancel_booking(session, clinic=setup.clinic, booking=booking, now=clock())
        session.commit()

    return make


def dispatch(app: Flask) -> str:
    """Run ``notifications run --once`` as an operator would; return its summary line."""
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def queued(session: Session, booking: Booking) -> dict[tuple[Kind, int], Notification]:
    session.rollback()
    rows = session.scalars(select(Notification).where(Notification.booking_id == booking.id))
    return {(row.kind, row.variant): row for row in rows}


def parts(message: EmailMessage) -> dict[str, EmailMessage]:
    """The message's leaf parts by content type (the attachment as ``attachment``)."""
    found: dict[str, EmailMessage] = {}
    for part in message.walk():
        if part.is_multipart():
            continue
        key = "attachment" if part.get_filename() else part.get_content_type()
        found[key] = part
    return found


def calendar_of(message: EmailMessage) -> Calendar:
    return Calendar.from_ical(parts(message)["text/calendar"].get_content())


def subjects(inbox: Inbox) -> list[str]:
    # A long subject is folded onto the line after "Subject:"; the parser keeps the space.
    return [str(message["Subject"]).strip() for message in inbox.messages()]


def kinds(inbox: Inbox) -> list[str]:
    """The first word of each subject: Booked, Preparing, Moved, Cancelled, After."""
    return [subject.split()[0].rstrip(":") for subject in subjects(inbox)]


# Wednesday 25 November 2026, 10:00 in London: two days after the tests' clock.
VISIT = london("2026-11-25", "10:00")


def test_a_booking_queues_its_confirmation_checklist_and_aftercare(book, session, clock):
    booking = book(VISIT)

    rows = queued(session, booking)

    assert set(rows) == {(Kind.CONFIRMATION, 0), (Kind.CHECKLIST, 24 * 60), (Kind.AFTERCARE, 0)}
    assert rows[Kind.CONFIRMATION, 0].due_at == clock()
    assert rows[Kind.CHECKLIST, 24 * 60].due_at == VISIT - timedelta(hours=24)
    assert rows[Kind.AFTERCARE, 0].due_at == booking.end_at + timedelta(hours=2)
    assert all(row.status is NotificationStatus.PENDING for row in rows.values())


def test_the_confirmation_carries_the_details_checklist_link_and_a_request_invite(
    app, book, smtp, session
):
    booking = book(VISIT, email="ann@example.org")

    assert dispatch(app) == "sent 1, retrying 0, failed 0, skipped 0"

    [message] = smtp.messages()
    assert str(message["To"]) == f"{booking.patient.name} <ann@example.org>"
    assert str(message["Subject"]) == (
        "Booked: Follow-up treatment on Wednesday 25 November 2026, 10:00 GMT"
    )
    found = parts(message)
    assert set(found) == {"text/plain", "text/html", "text/calendar", "attachment"}
    text = found["text/plain"].get_content()
    assert "Wednesday 25 November 2026, 10:00 to 11:00 GMT (Europe/London)" in text
    assert "- Bring a list of your medications and supplements." in text
    assert f"https://clinic.test/b/{booking.manage_token}" in text
    assert "<li>Avoid caffeine and alcohol on the day of your visit.</li>" in (
        found["text/html"].get_content()
    )
    invite = found["text/calendar"]
    assert invite.get_param("method") == "REQUEST"
    calendar = calendar_of(message)
    assert str(calendar["METHOD"]) == "REQUEST"
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == booking.calendar_uid
    assert event.decoded("DTSTART") == VISIT
    assert str(event["ATTENDEE"]) == "mailto:ann@example.org"
    attachment = found["attachment"]
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_content().decode() == invite.get_content()


def test_a_first_visit_confirmation_adds_the_first_visit_items(app, book, smtp, setup):
    book(VISIT, treatment=setup.initial)

    dispatch(app)

    text = parts(smtp.messages()[0])["text/plain"].get_content()
    assert "in-depth consultation" in text
    assert "Please arrive ten minutes early." in text
    assert "health questions you answered when booking" in text


def test_a_message_is_written_when_sent_from_the_checklist_as_it_is_then(
    app, book, smtp, session, setup
):
    book(VISIT)
    session.execute(
        update(ChecklistItem)
        .where(ChecklistItem.text.startswith("Avoid caffeine"))
        .values(text="Please skip coffee on the day.")
    )
    session.add(
        ChecklistItem(
            clinic_id=setup.clinic.id,
            treatment_id=setup.follow_up.id,
            section=ChecklistSection.PREPARATION,
            text="Wear shorts: this treatment works on the knees.",
        )
    )
    session.commit()

    dispatch(app)

    text = parts(smtp.messages()[0])["text/plain"].get_content()
    # The treatment's own preparation list replaces the clinic's.
    assert "- Wear shorts: this treatment works on the knees." in text
    assert "Please skip coffee" not in text
    assert "Bring a list of your medications" not in text


def test_the_checklist_goes_once_at_its_due_time(app, book, smtp, clock):
    book(VISIT)
    dispatch(app)
    assert len(smtp.received) == 1  # the confirmation

    clock.now = VISIT - timedelta(hours=24, seconds=1)
    assert dispatch(app) == "sent 0, retrying 0, failed 0, skipped 0"
    clock.now = VISIT - timedelta(hours=24)
    assert dispatch(app) == "sent 1, retrying 0, failed 0, skipped 0"
    clock.now = VISIT - timedelta(hours=1)
    dispatch(app)

    assert subjects(smtp) == [
        "Booked: Follow-up treatment on Wednesday 25 November 2026, 10:00 GMT",
        "Preparing for your visit on Wednesday 25 November 2026, 10:00 GMT",
    ]
    reminder = smtp.messages()[1]
    assert "text/calendar" not in parts(reminder)
    assert "- Wear loose, comfortable clothing" in parts(reminder)["text/plain"].get_content()


def test_a_booking_inside_the_lead_time_gets_its_checklist_at_once(app, book, smtp, clock):
    clock.now = london("2026-11-24", "10:00")
    book(london("2026-11-25", "09:00"))  # 23 hours ahead

    dispatch(app)

    assert sorted(subjects(smtp)) == [
        "Booked: Follow-up treatment on Wednesday 25 November 2026, 09:00 GMT",
        "Preparing for your visit on Wednesday 25 November 2026, 09:00 GMT",
    ]


def test_several_lead_times_send_one_checklist_each_and_overdue_ones_only_once(
    app, book, smtp, session, setup, clock
):
    setup.clinic.checklist_lead_hours = [72, 48, 2]
    session.commit()
    booking = book(VISIT)  # 50 hours ahead: the 72-hour lead has passed

    rows = queued(session, booking)

    checklists = {
        variant: row.due_at for (kind, variant), row in rows.items() if kind is Kind.CHECKLIST
    }
    assert checklists == {
        72 * 60: clock(),
        48 * 60: VISIT - timedelta(hours=48),
        2 * 60: VISIT - timedelta(hours=2),
    }
    clock.now = VISIT - timedelta(hours=1)
    dispatch(app)
    assert sum(s.startswith("Preparing") for s in subjects(smtp)) == 3


def test_a_cancellation_sends_a_cancel_and_nothing_more(
    app, book, smtp, session, clock, setup, cancel
):
    booking = book(VISIT)
    dispatch(app)
    cancel(booking)

    dispatch(app)
    clock.now = VISIT + timedelta(days=1)
    dispatch(app)

    assert kinds(smtp) == ["Booked", "Cancelled"]
    cancellation = smtp.messages()[1]
    assert parts(cancellation)["text/calendar"].get_param("method") == "CANCEL"
    calendar = calendar_of(cancellation)
    assert str(calendar["METHOD"]) == "CANCEL"
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == booking.calendar_uid
    assert event["SEQUENCE"] == 1
    assert str(event["STATUS"]) == "CANCELLED"
    assert "https://clinic.test/book?service=" in parts(cancellation)["text/plain"].get_content()
    rows = queued(session, booking)
    assert rows[Kind.CHECKLIST, 24 * 60].status is NotificationStatus.SKIPPED
    assert rows[Kind.AFTERCARE, 0].status is NotificationStatus.SKIPPED


def test_cancelling_before_the_confirmation_went_sends_only_the_cancellation(
    app, book, smtp, session, clock, setup, cancel
):
    booking = book(VISIT)
    cancel(booking)

    dispatch(app)

    assert kinds(smtp) == ["Cancelled"]


def test_a_reschedule_sends_an_update_with_the_same_uid_and_a_higher_sequence(
    app, book, smtp, session, clock, setup, move
):
    booking = book(VISIT, practitioner=setup.mei)
    dispatch(app)
    new_start = london("2026-11-26", "15:00")

    move(booking, new_start)
    dispatch(app)

    update_mail = smtp.messages()[1]
    assert subjects(smtp)[1] == (
        "Moved: Follow-up treatment is now on Thursday 26 November 2026, 15:00 GMT"
    )
    calendar = calendar_of(update_mail)
    assert str(calendar["METHOD"]) == "REQUEST"
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == booking.calendar_uid
    assert event["SEQUENCE"] == 1
    assert event.decoded("DTSTART") == new_start
    rows = queued(session, booking)
    assert rows[Kind.CHECKLIST, 24 * 60].due_at == new_start - timedelta(hours=24)
    assert rows[Kind.AFTERCARE, 0].due_at == booking.end_at + timedelta(hours=2)


def test_moving_twice_before_the_update_went_sends_one_update(
    app, book, smtp, session, clock, setup, move
):
    booking = book(VISIT, practitioner=setup.mei)
    dispatch(app)
    for start in (london("2026-11-26", "15:00"), london("2026-11-27", "11:00")):
        move(booking, start)

    dispatch(app)

    assert kinds(smtp) == ["Booked", "Moved"]
    [event] = calendar_of(smtp.messages()[1]).walk("VEVENT")
    assert event["SEQUENCE"] == 2
    assert event.decoded("DTSTART") == london("2026-11-27", "11:00")


def test_moving_before_the_confirmation_went_sends_only_the_confirmation_of_the_new_time(
    app, book, smtp, session, clock, setup, move
):
    booking = book(VISIT, practitioner=setup.mei)
    move(booking, london("2026-11-26", "15:00"))

    dispatch(app)

    assert subjects(smtp) == ["Booked: Follow-up treatment on Thursday 26 November 2026, 15:00 GMT"]


def test_the_checklist_is_re_timed_across_a_daylight_saving_change(
    app, book, smtp, session, clock, setup, move
):
    # Clocks go forward in London on Sunday 28 March 2027.
    clock.now = datetime(2027, 3, 20, 8, 0, tzinfo=UTC)
    booking = book(london("2027-03-26", "10:00"), practitioner=setup.mei)
    moved = london("2027-03-29", "10:00")  # 09:00 UTC, in summer time

    move(booking, moved)

    assert moved == datetime(2027, 3, 29, 9, 0, tzinfo=UTC)
    assert queued(session, booking)[Kind.CHECKLIST, 24 * 60].due_at == moved - timedelta(hours=24)
    dispatch(app)
    clock.now = london("2027-03-26", "10:00") - timedelta(hours=24)
    dispatch(app)
    assert kinds(smtp) == ["Booked"]
    clock.now = datetime(2027, 3, 28, 9, 0, tzinfo=UTC)
    dispatch(app)
    assert subjects(smtp)[-1] == "Preparing for your visit on Monday 29 March 2027, 10:00 BST"


def test_a_sent_checklist_goes_again_only_when_the_visit_moves_to_another_day(
    app, book, smtp, session, clock, setup, move
):
    booking = book(VISIT, practitioner=setup.mei)
    clock.now = VISIT - timedelta(hours=23)
    dispatch(app)  # the confirmation and the checklist
    move(booking, london("2026-11-25", "15:00"))
    dispatch(app)
    assert kinds(smtp) == ["Booked", "Preparing", "Moved"]

    move(booking, london("2026-11-30", "10:00"))
    clock.now = london("2026-11-29", "10:00")
    dispatch(app)

    assert subjects(smtp)[-2:] == [
        "Moved: Follow-up treatment is now on Monday 30 November 2026, 10:00 GMT",
        "Preparing for your visit on Monday 30 November 2026, 10:00 GMT",
    ]
    checklists = [m for m in smtp.messages() if str(m["Subject"]).strip().startswith("Prep")]
    assert checklists[0]["Message-ID"] != checklists[1]["Message-ID"]


def test_aftercare_goes_two_hours_after_the_visit_with_a_link_to_book_the_next(
    app, book, smtp, clock, setup
):
    booking = book(VISIT, practitioner=setup.james, treatment=setup.initial)
    clock.now = booking.end_at + timedelta(hours=2) - timedelta(seconds=1)
    dispatch(app)
    assert not any(s.startswith("After") for s in subjects(smtp))

    clock.now = booking.end_at + timedelta(hours=2)
    dispatch(app)

    aftercare = smtp.messages()[-1]
    assert subjects(smtp)[-1] == "After your initial consultation today"
    text = parts(aftercare)["text/plain"].get_content()
    assert "Slight bruising, soreness or tingling at a needle site is normal" in text
    assert "Drink plenty of water today." in text
    # After a first visit the next booking is the follow-up, with the same practitioner.
    assert (
        f"https://clinic.test/book?service={setup.follow_up.id}&practitioner={setup.james.id}"
        in text
    )
    assert "text/calendar" not in parts(aftercare)


def test_no_aftercare_for_a_patient_who_did_not_come(app, book, smtp, session, clock):
    booking = book(VISIT)
    session.execute(
        update(Booking).where(Booking.id == booking.id).values(status=BookingStatus.NO_SHOW)
    )
    session.commit()
    clock.now = booking.end_at + timedelta(hours=3)

    dispatch(app)

    assert not any(s.startswith("After") for s in subjects(smtp))
    assert queued(session, booking)[Kind.AFTERCARE, 0].status is NotificationStatus.SKIPPED


def test_a_421_is_retried_later_and_delivered_once(app, book, smtp, session, clock):
    booking = book(VISIT)
    smtp.data_replies.append("421 4.3.2 Service busy, try later")

    assert dispatch(app) == "sent 0, retrying 1, failed 0, skipped 0"
    confirmation = queued(session, booking)[Kind.CONFIRMATION, 0]
    assert confirmation.status is NotificationStatus.PENDING
    assert confirmation.next_attempt_at == clock() + timedelta(minutes=1)
    assert "421 4.3.2 Service busy" in confirmation.last_error
    assert dispatch(app) == "sent 0, retrying 0, failed 0, skipped 0"  # not due yet

    clock.now += timedelta(minutes=1)
    assert dispatch(app) == "sent 1, retrying 0, failed 0, skipped 0"

    assert len(smtp.received) == 1
    confirmation = queued(session, booking)[Kind.CONFIRMATION, 0]
    assert [a.outcome for a in confirmation.history] == [
        AttemptOutcome.RETRYING,
        AttemptOutcome.SENT,
    ]


def test_a_dropped_connection_keeps_the_batch_and_it_all_goes_once(app, book, smtp, clock):
    for day in ("2026-11-25", "2026-11-26", "2026-11-27"):
        book(london(day, "10:00"))
    smtp.data_replies.append("drop")

    first = dispatch(app)
    clock.now += timedelta(minutes=5)
    dispatch(app)

    assert first.startswith("sent 2, retrying 1")
    assert len(smtp.received) == 3
    assert len({m["Message-ID"] for m in smtp.messages()}) == 3


def test_while_smtp_is_down_nothing_is_lost(app, book, session, clock):
    port = free_port()
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{port}"
    try:
        bookings = [book(london(day, "10:00")) for day in ("2026-11-25", "2026-11-26")]
        assert dispatch(app) == "sent 0, retrying 2, failed 0, skipped 0"
        for delay in (1, 2, 4):  # the server stays down; the waits grow
            clock.now += timedelta(minutes=delay)
            assert dispatch(app) == "sent 0, retrying 2, failed 0, skipped 0"
        row = queued(session, bookings[0])[Kind.CONFIRMATION, 0]
        assert row.next_attempt_at == clock() + timedelta(minutes=8)
        assert "cannot reach the mail server" in row.last_error

        with smtp_server(port=port) as (inbox, _):
            clock.now += timedelta(minutes=8)
            assert dispatch(app) == "sent 2, retrying 0, failed 0, skipped 0"
            assert len(inbox.received) == 2
    finally:
        app.config["SMTP_URL"] = ""


def test_a_refused_recipient_is_failed_with_the_reason_and_not_retried(
    app, book, smtp, session, clock
):
    booking = book(VISIT, email="gone@example.org")
    smtp.refuse["gone@example.org"] = "550 5.1.1 No such mailbox"

    assert dispatch(app) == "sent 0, retrying 0, failed 1, skipped 0"
    clock.now += timedelta(hours=2)
    dispatch(app)

    row = queued(session, booking)[Kind.CONFIRMATION, 0]
    assert row.status is NotificationStatus.FAILED
    assert "550 5.1.1 No such mailbox" in row.last_error
    assert smtp.received == []


def test_a_name_with_line_breaks_and_html_cannot_inject_headers_or_markup(app, smtp, book):
    # The public forms refuse such a name; one can still arrive from an import or old data.
    book(
        VISIT,
        name="Eve\r\nBcc: victim@example.org\r\n\r\n<script>alert(1)</script>",
        email="eve@example.org",
    )

    dispatch(app)

    [received] = smtp.received
    assert received.rcpt_tos == ["eve@example.org"]
    message = received.message
    assert message["Bcc"] is None
    assert "victim" not in message["To"].addresses[0].addr_spec
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head
    html = parts(message)["text/html"].get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_without_smtp_the_mail_is_written_to_the_mail_folder(app, book, tmp_path):
    app.config["MAIL_FOLDER"] = str(tmp_path)
    try:
        book(VISIT)
        assert dispatch(app) == "sent 1, retrying 0, failed 0, skipped 0"
    finally:
        app.config["MAIL_FOLDER"] = str(tmp_path.parent)
    [written] = list(tmp_path.glob("*.eml"))
    assert b"Subject: Booked: Follow-up treatment" in written.read_bytes()


def test_a_bad_smtp_url_stops_the_dispatcher_with_a_message(app):
    app.config["SMTP_URL"] = "mail.example.org:25"
    try:
        result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    finally:
        app.config["SMTP_URL"] = ""

    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: SMTP_URL must start with smtp://, smtp+starttls:// or smtps://, "
        "not 'mail.example.org:25'"
    )


# --- Several dispatchers, and dispatchers that stop half-way ---------------------------------


def _settings(name: str, **params) -> Settings:
    return Settings(
        base_url="https://clinic.test",
        mail_from="clinic@clinic.test",
        message_host="clinic.test",
        name=name,
        **params,
    )


def test_two_dispatchers_side_by_side_deliver_each_message_exactly_once(
    app, session, book, smtp, clock
):
    # Sixty due messages, sent by two dispatchers at once in small batches.
    days = ("2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28", "2026-11-30")
    times = ("09:00", "10:15", "11:30", "14:00", "15:15", "16:30")
    # Two practitioners and two rooms: each time takes two bookings.
    starts = [london(day, hhmm) for day in days for hhmm in times for _ in range(2)]
    for start in starts:
        book(start)
    # Only the confirmations are due now.
    due = session.scalar(
        select(func.count()).where(
            Notification.status == NotificationStatus.PENDING,
            Notification.next_attempt_at <= clock(),
        )
    )
    assert due == 60
    with app.app_context():
        engine = db.engine
    # Each dispatcher's first send waits until both hold a claim, so they truly overlap.
    both_claimed = threading.Barrier(2, timeout=30)
    totals: list[Counter] = []
    errors: list[BaseException] = []

    class MeetingMailer:
        def __init__(self) -> None:
            self.inner = mailer_from(app.config, app.instance_path)
            self.met = False

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc_info):
            self.inner.__exit__(*exc_info)

        def send(self, message):
            if not self.met:
                both_claimed.wait()
                self.met = True
            self.inner.send(message)

    def run(name: str) -> None:
        try:
            with app.app_context(), Session(engine) as own:
                mailer = MeetingMailer()
                totals.append(
                    send_due(
                        own,
                        mailer_factory=lambda: mailer,
                        settings=_settings(name, batch_size=5),
                        clock=clock,
                    )
                )
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    ids = [message["Message-ID"] for message in smtp.messages()]
    assert len(ids) == 60
    assert len(set(ids)) == 60
    assert sum(total[AttemptOutcome.SENT] for total in totals) == 60
    assert all(total[AttemptOutcome.SENT] > 0 for total in totals), "both dispatchers worked"


def test_a_dispatcher_killed_between_claim_and_send_leaves_its_work_to_the_next(
    app, book, session, smtp, clock
):
    book(VISIT)
    lease = timedelta(minutes=5)
    with app.app_context():
        # The first dispatcher claims the confirmation and dies before sending it.
        assert len(claim(db.session(), settings=_settings("dead", lease=lease), now=clock())) == 1
        db.session.remove()

    assert dispatch(app) == "sent 0, retrying 0, failed 0, skipped 0"  # still claimed
    clock.now += lease + timedelta(seconds=1)
    assert dispatch(app) == "sent 1, retrying 0, failed 0, skipped 0"

    assert len(smtp.received) == 1


def test_messages_a_dispatcher_releases_are_taken_at_once_by_another(app, book, clock):
    book(VISIT)
    first, second = _settings("first"), _settings("second")
    with app.app_context():
        own = db.session()
        claimed = claim(own, settings=first, now=clock())
        assert claim(own, settings=second, now=clock()) == []
        release(own, claimed, settings=second)  # not theirs: nothing changes
        assert claim(own, settings=second, now=clock()) == []

        release(own, claimed, settings=first)

        assert claim(own, settings=second, now=clock()) == claimed
        db.session.remove()


def test_a_dispatcher_whose_lease_ran_out_does_not_send_what_another_took_over(
    app, book, session, smtp, clock
):
    book(VISIT)
    slow, quick = _settings("slow"), _settings("quick")
    with app.app_context():
        own = db.session()
        [notification_id] = claim(own, settings=slow, now=clock())
        clock.now += slow.lease + timedelta(seconds=1)
        assert claim(own, settings=quick, now=clock()) == [notification_id]
        with mailer_from(app.config, app.instance_path) as mailer:
            late = deliver(own, notification_id, mailer=mailer, settings=slow, clock=clock)
            taken_over = deliver(own, notification_id, mailer=mailer, settings=quick, clock=clock)
        db.session.remove()

    assert late is None
    assert taken_over is AttemptOutcome.SENT
    assert len(smtp.received) == 1


# --- The staff's view ------------------------------------------------------------------------


def test_reception_sees_each_message_its_attempts_and_what_it_says(
    app, client, book, smtp, make_user, session
):
    booking = book(VISIT)
    smtp.data_replies.append("421 4.3.2 Service busy, try later")
    dispatch(app)
    log_in(client, make_user(Role.RECEPTION).email)

    listing = client.get("/staff/notifications/?status=pending")
    confirmation = queued(session, booking)[Kind.CONFIRMATION, 0]
    page = client.get(f"/staff/notifications/{confirmation.id}")

    assert listing.status_code == 200
    assert booking.patient.name in listing.text
    assert "421 4.3.2 Service busy" in listing.text
    assert page.status_code == 200
    assert "Retrying" in page.text
    assert "Bring a list of your medications and supplements." in page.text
    assert "METHOD:REQUEST" in page.text


def ask_to_resend(client, notification, **options):
    """Press "Send again" on a message's page."""
    page = f"/staff/notifications/{notification.id}"
    return client.post(f"{page}/resend", data={"csrf_token": token_of(client, page)}, **options)


def test_staff_resend_a_sent_message_under_a_new_message_id(
    app, client, book, smtp, make_user, session
):
    booking = book(VISIT)
    dispatch(app)
    confirmation = queued(session, booking)[Kind.CONFIRMATION, 0]
    log_in(client, make_user(Role.ADMIN).email)

    answer = ask_to_resend(client, confirmation)
    dispatch(app)

    assert answer.status_code == 303
    first, second = smtp.messages()
    assert str(first["Subject"]) == str(second["Subject"])
    assert first["Message-ID"] != second["Message-ID"]


def test_a_message_about_a_cancelled_visit_is_not_sent_again(
    app, client, book, smtp, make_user, session, clock, setup, cancel
):
    booking = book(VISIT)
    dispatch(app)
    cancel(booking)
    confirmation = queued(session, booking)[Kind.CONFIRMATION, 0]
    log_in(client, make_user(Role.RECEPTION).email)

    answer = ask_to_resend(client, confirmation, follow_redirects=True)

    assert "Not sent again: the visit was cancelled." in answer.text
    assert queued(session, booking)[Kind.CONFIRMATION, 0].status is NotificationStatus.SENT


def test_the_staff_preview_escapes_what_a_patient_typed(app, client, session, book, make_user):
    book(VISIT, name='Eve "><script>alert(1)</script>')
    [row] = session.scalars(select(Notification).where(Notification.kind == Kind.CONFIRMATION))
    log_in(client, make_user(Role.ADMIN).email)

    page = client.get(f"/staff/notifications/{row.id}")

    assert "<script>alert(1)</script>" not in page.text
    assert 'sandbox=""' in page.text


def test_the_mail_folder_is_readable_in_the_staff_area(app, client, book, make_user, tmp_path):
    app.config["MAIL_FOLDER"] = str(tmp_path)
    try:
        booking = book(VISIT)
        dispatch(app)
        log_in(client, make_user(Role.RECEPTION).email)
        listing = client.get("/staff/mail/")
        [written] = list(tmp_path.glob("*.eml"))
        page = client.get(f"/staff/mail/{written.name}")
        outside = client.get("/staff/mail/..%2Fsecret_key")
    finally:
        app.config["MAIL_FOLDER"] = str(tmp_path.parent)

    assert listing.status_code == 200
    assert "Booked: Follow-up treatment on Wednesday 25 November 2026" in listing.text
    assert page.status_code == 200
    assert f"https://clinic.test/b/{booking.manage_token}" in page.text
    assert outside.status_code == 404


def test_practitioners_do_not_see_patient_mail(client, make_user):
    log_in(client, make_user(Role.PRACTITIONER).email)

    assert client.get("/staff/notifications/").status_code == 403
    assert client.get("/staff/mail/").status_code == 403


def test_the_dispatcher_process_sends_as_bookings_come_and_stops_cleanly_on_sigterm(
    book, smtp, app, clock, test_database_url
):
    # The process runs on the real clock, so the booking is made on it too.
    clock.now = datetime.now(UTC).replace(microsecond=0)
    visit = (clock.now + timedelta(days=3)).replace(hour=10, minute=0, second=0)
    while visit.weekday() == 6:  # no hours on Sundays
        visit += timedelta(days=1)
    environment = {
        **os.environ,
        "DATABASE_URL": test_database_url,
        "SMTP_URL": app.config["SMTP_URL"],
        "SECRET_KEY": "test-secret",
        "BASE_URL": "https://clinic.test",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "scheduler",
            "notifications",
            "run",
            "--poll",
            "0.1",
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        book(visit)
        deadline = time.monotonic() + 20
        while not smtp.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)

    assert process.returncode == 0, errors
    assert kinds(smtp) == ["Booked"]
    assert "Dispatcher stopped: sent 1" in errors
