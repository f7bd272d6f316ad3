"""The staff area's front door and its calendars page: login, roles, uploads, subscriptions."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from scheduler.calendars.models import BusyTime, CalendarSubscription
from scheduler.clinic.models import Practitioner
from scheduler.staff.models import Role, User
from tests.conftest import PASSWORD, csrf_token, log_in, london, token_of


def test_a_staff_member_logs_in_and_out(client, make_user):
    user = make_user(Role.RECEPTION)

    answer = log_in(client, user.email)

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/"
    assert "reception@clinic.example" in client.get("/staff/").text
    token = token_of(client, "/staff/")
    assert client.post("/staff/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/staff/").status_code == 302, "logged out: back to the login page"


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(client, make_user):
    user = make_user(Role.ADMIN)

    wrong = log_in(client, user.email, "not the password")
    unknown = log_in(client, "nobody@clinic.example", "not the password")

    assert wrong.status_code == unknown.status_code == 401
    message = "That email and password do not match an account"
    assert message in wrong.text
    assert message in unknown.text


def test_repeated_failures_lock_the_account_for_growing_periods(client, session, make_user, clock):
    user = make_user(Role.ADMIN)
    for _ in range(5):
        log_in(client, user.email, "guess")

    assert log_in(client, user.email).status_code == 401, "locked: even the right password"
    clock.now += timedelta(seconds=31)
    assert log_in(client, user.email, "guess").status_code == 401
    session.rollback()
    locked = session.get(User, user.id)
    assert locked.locked_until - clock.now == timedelta(minutes=1), "twice as long each time"
    clock.now += timedelta(minutes=1, seconds=1)
    assert log_in(client, user.email).status_code == 303
    session.rollback()
    assert session.get(User, user.id).failed_logins == 0


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:x"]
)
def test_login_never_redirects_to_another_site(client, make_user, target):
    user = make_user(Role.ADMIN)

    answer = log_in(client, user.email, next_url=target)

    assert answer.headers["Location"] == "/staff/"


def test_login_returns_to_the_page_asked_for(client, make_user):
    user = make_user(Role.ADMIN)

    assert log_in(client, user.email, next_url="/staff/calendars").headers["Location"] == (
        "/staff/calendars"
    )


def test_changing_the_password_logs_out_other_sessions(app, client, make_user):
    user = make_user(Role.ADMIN)
    other = app.test_client()
    log_in(client, user.email)
    log_in(other, user.email)
    token = token_of(client, "/staff/password")

    answer = client.post(
        "/staff/password",
        data={
            "current": PASSWORD,
            "new": "a brand new password",
            "confirm": "a brand new password",
            "csrf_token": token,
        },
    )

    assert answer.status_code == 303
    assert client.get("/staff/").status_code == 200, "this session stays logged in"
    assert other.get("/staff/").status_code == 302, "the other one is logged out"
    assert log_in(app.test_client(), user.email, "a brand new password").status_code == 303


def test_logout_is_not_possible_by_a_get_or_without_the_token(client, make_user):
    user = make_user(Role.ADMIN)
    log_in(client, user.email)

    assert client.get("/staff/logout").status_code == 405
    assert client.post("/staff/logout").status_code == 400
    assert client.get("/staff/").status_code == 200


LOGIN_PAGES = ("staff.login", "two_factor.code", "two_factor.key_login")


def staff_routes(app):
    """Every staff route but the login's pages (password, then code or key), logging out last."""
    rules = [
        rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/staff") and rule.endpoint not in LOGIN_PAGES
    ]
    return sorted(rules, key=lambda rule: rule.endpoint == "staff.logout")


def concrete(rule):
    return re.sub(r"<int:\w+>", "1", rule.rule)


def test_every_staff_route_declares_who_may_use_it(app):
    for rule in staff_routes(app):
        view = app.view_functions[rule.endpoint]
        assert hasattr(view, "allowed_roles"), f"{rule.rule} has no role check (staff_only)"


def test_anonymous_visitors_are_sent_to_the_login_page_everywhere(app, client, setup):
    token = csrf_token(client.get("/staff/login").text)
    for rule in staff_routes(app):
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            answer = client.open(concrete(rule), method=method, data={"csrf_token": token})
            assert answer.status_code == 302, (method, rule.rule)
            assert answer.headers["Location"].startswith("/staff/login"), rule.rule


@pytest.mark.parametrize("role", list(Role))
def test_each_role_reaches_exactly_the_routes_allowed_to_it(app, make_user, role):
    user = make_user(role)
    client = app.test_client()
    log_in(client, user.email)
    token = token_of(client, "/staff/password")
    for rule in staff_routes(app):
        allowed = role in app.view_functions[rule.endpoint].allowed_roles
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            answer = client.open(concrete(rule), method=method, data={"csrf_token": token})
            if allowed:
                assert answer.status_code not in (302, 403), (role, method, rule.rule)
            else:
                assert answer.status_code == 403, (role, method, rule.rule)


DENTIST = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\r\n"
    b"METHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:dentist-1@google.com\r\nDTSTAMP:20261120T120000Z\r\n"
    b"DTSTART:20261125T100000Z\r\nDTEND:20261125T110000Z\r\nSUMMARY:Dentist\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def upload(client, practitioner, *files, kind="busy"):
    return client.post(
        "/staff/calendars/import",
        data={
            "csrf_token": token_of(client),
            "practitioner": str(practitioner.id),
            "kind": kind,
            "files": [(io.BytesIO(data), name) for name, data in files],
        },
        content_type="multipart/form-data",
    )


def busy_rows(session):
    session.rollback()
    return session.scalars(select(BusyTime).order_by(BusyTime.start_at)).all()


def test_a_practitioner_uploads_an_invite_and_the_time_is_blocked(
    client, session, setup, make_user, book
):
    clash = book(london("2026-11-25", "10:30"), practitioner=setup.mei)
    log_in(client, make_user(Role.PRACTITIONER).email)

    answer = upload(client, setup.mei, ("dentist.ics", DENTIST))

    assert answer.status_code == 200
    assert "imported 1, updated 0, cancelled 0, skipped 0, errors 0" in answer.text
    assert "Bookings that now clash" in answer.text
    assert clash.patient.name in answer.text
    [row] = busy_rows(session)
    assert (row.practitioner_id, row.start_at, row.end_at) == (
        setup.mei.id,
        london("2026-11-25", "10:00"),
        london("2026-11-25", "11:00"),
    )
    page = client.get("/staff/calendars").text
    assert "Dentist" in page, "the coming busy time is listed"


def test_a_file_that_is_not_a_calendar_is_refused_with_where_and_nothing_written(
    client, session, setup, make_user
):
    log_in(client, make_user(Role.RECEPTION).email)
    broken = DENTIST.replace(b"END:VEVENT\r\n", b"")

    answer = upload(client, setup.mei, ("good.ics", DENTIST), ("broken.ics", broken))

    assert answer.status_code == 422
    assert (
        "broken.ics was not imported: line 11: END:VCALENDAR closes BEGIN:VEVENT from line 5"
        in answer.text
    )
    assert len(busy_rows(session)) == 1, "the good file went in, nothing of the broken one"


def test_a_practitioner_cannot_import_into_someone_elses_calendar(
    client, session, setup, make_user
):
    log_in(client, make_user(Role.PRACTITIONER).email)

    answer = upload(client, setup.james, ("dentist.ics", DENTIST))

    assert answer.status_code == 422, "James is not among the choices"
    assert busy_rows(session) == []


def test_a_practitioner_cannot_import_appointments(client, session, setup, make_user):
    log_in(client, make_user(Role.PRACTITIONER).email)

    assert upload(client, setup.mei, ("x.ics", DENTIST), kind="appointments").status_code == 403


def test_an_upload_over_the_size_cap_is_refused(
    app, client, session, setup, make_user, monkeypatch
):
    monkeypatch.setitem(app.config, "CALENDAR_IMPORT_MAX_BYTES", 100)
    log_in(client, make_user(Role.ADMIN).email)

    answer = upload(client, setup.mei, ("dentist.ics", DENTIST))

    assert answer.status_code == 422
    assert "larger than 100 bytes" in answer.text
    assert busy_rows(session) == []


def test_staff_subscribe_a_calendar_and_remove_it(client, session, setup, make_user):
    log_in(client, make_user(Role.ADMIN).email)

    answer = client.post(
        "/staff/calendars/subscriptions",
        data={
            "csrf_token": token_of(client),
            "practitioner": str(setup.james.id),
            "url": "webcal://p01-caldav.icloud.com/published/2/secret",
            "name": "James's iPhone",
        },
    )

    assert answer.status_code == 303
    session.rollback()
    subscription = session.scalars(select(CalendarSubscription)).one()
    assert subscription.url == "https://p01-caldav.icloud.com/published/2/secret"
    assert "James&#39;s iPhone" in client.get("/staff/calendars").text
    removed = client.post(
        f"/staff/calendars/subscriptions/{subscription.id}/delete",
        data={"csrf_token": token_of(client)},
    )
    assert removed.status_code == 303
    session.rollback()
    assert session.scalars(select(CalendarSubscription)).all() == []


def test_a_subscription_address_that_is_not_web_is_refused(client, session, setup, make_user):
    log_in(client, make_user(Role.ADMIN).email)

    answer = client.post(
        "/staff/calendars/subscriptions",
        data={
            "csrf_token": token_of(client),
            "practitioner": str(setup.mei.id),
            "url": "file:///etc/passwd",
        },
    )

    assert answer.status_code == 422
    assert "the address must start with https://" in answer.text


def test_rotating_a_feed_gives_it_a_new_address_and_the_old_one_stops(
    client, session, setup, make_user
):
    old = setup.mei.feed_token
    log_in(client, make_user(Role.PRACTITIONER).email)
    assert old in client.get("/staff/calendars").text

    answer = client.post(
        f"/staff/calendars/feeds/{setup.mei.id}/rotate", data={"csrf_token": token_of(client)}
    )

    assert answer.status_code == 303
    session.rollback()
    new = session.get(Practitioner, setup.mei.id).feed_token
    assert new != old
    assert client.get(f"/feeds/{old}.ics").status_code == 404
    assert client.get(f"/feeds/{new}.ics").status_code == 200


def test_a_practitioner_cannot_rotate_someone_elses_feed(client, session, setup, make_user):
    old = setup.james.feed_token
    log_in(client, make_user(Role.PRACTITIONER).email)

    answer = client.post(
        f"/staff/calendars/feeds/{setup.james.id}/rotate", data={"csrf_token": token_of(client)}
    )

    assert answer.status_code == 404
    session.rollback()
    assert session.get(Practitioner, setup.james.id).feed_token == old


def test_users_create_makes_an_account_that_can_log_in(app, client, session, setup):
    setup.mei.email = "mei.lin@clinic.example"
    session.commit()

    result = app.test_cli_runner().invoke(
        args=["users", "create", setup.mei.email, "--role", "practitioner", "--password", PASSWORD]
    )

    assert result.exit_code == 0, result.output
    assert log_in(client, setup.mei.email).status_code == 303


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-an-email", "--role", "admin", "--password", PASSWORD], "is not an email address"),
        (["a@clinic.example", "--role", "admin", "--password", "short"], "at least 12 characters"),
        (["a@clinic.example", "--role", "boss", "--password", PASSWORD], "Invalid value"),
        (
            ["nobody@clinic.example", "--role", "practitioner", "--password", PASSWORD],
            "no practitioner",
        ),
    ],
)
def test_users_create_refuses_bad_input_in_one_line(app, setup, args, message):
    result = app.test_cli_runner().invoke(args=["users", "create", *args])

    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
