"""A clinic's worth of rows, written with only the columns a revision has, and what the
migrations should make of them: the data behind tests/test_migrations_data.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import JSON, Connection, Integer, Text, column, insert, select, table

from scheduler.clinic.checklists import DEFAULTS
from scheduler.extensions import db

# The revision that created each table.
TABLE_SINCE = {
    "clinics": "0001",
    "patients": "0001",
    "practitioners": "0001",
    "rooms": "0001",
    "treatments": "0001",
    "practitioner_treatments": "0001",
    "working_hours": "0001",
    "time_off": "0001",
    "users": "0001",
    "bookings": "0001",
    "calendar_subscriptions": "0003",
    "external_events": "0003",
    "busy_times": "0003",
    "checklist_items": "0005",
    "notifications": "0005",
    "delivery_attempts": "0005",
    "audit_events": "0006",
    "intakes": "0007",
    "courses": "0008",
    "waitlist_entries": "0009",
    "waitlist_days": "0009",
    "waitlist_offers": "0009",
    "api_tokens": "0011",
    "webhooks": "0012",
    "webhook_subscriptions": "0012",
    "webhook_deliveries": "0012",
    "webhook_attempts": "0012",
    "recovery_codes": "0014",
    "staff_sessions": "0018",
    "security_keys": "0019",
}


class _FreshToken:
    """Equal to any new feed token: 0002 gives each practitioner a random one."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and len(other) >= 43

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<a fresh feed token>"


FRESH_TOKEN = _FreshToken()


class _SoonAfterUpgrade:
    """Equal to a time 90 days after now, give or take a day: what 0014 gives old tokens."""

    def __eq__(self, other: object) -> bool:
        expected = datetime.now(UTC) + timedelta(days=90)
        return isinstance(other, datetime) and abs(other - expected) < timedelta(days=1)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<90 days after the upgrade>"


NINETY_DAYS_ON = _SoonAfterUpgrade()


@dataclass(frozen=True)
class FromPatient:
    """What 0015 gives a booking or waitlist place made before it: its patient's ``field``."""

    field: str

    def of(self, data: Dataset, row: Row) -> Any:
        [patient] = [
            other
            for other in data.rows
            if other.table == "patients" and other.key[0] == row.values["patient_id"]
        ]
        return patient.values.get(self.field) or ""


# Columns added to a table after it was created: (revision, the value a row that existed
# before gets). Every other column is as old as its table.
COLUMN_SINCE: dict[tuple[str, str], tuple[str, Any]] = {
    ("practitioners", "feed_token"): ("0002", FRESH_TOKEN),
    ("users", "failed_logins"): ("0004", 0),
    ("users", "locked_until"): ("0004", None),
    ("users", "session_version"): ("0004", 1),
    ("clinics", "checklist_lead_hours"): ("0005", [24]),
    ("clinics", "aftercare_delay_minutes"): ("0005", 120),
    ("bookings", "staff_notes"): ("0006", ""),
    ("patients", "erased_at"): ("0006", None),
    ("bookings", "course_id"): ("0008", None),
    ("notifications", "waitlist_offer_id"): ("0009", None),
    ("notifications", "user_id"): ("0016", None),
    ("clinics", "approval_threshold"): ("0010", None),
    ("rooms", "kind"): ("0010", ""),
    ("treatments", "room_kind"): ("0010", None),
    ("bookings", "approval_requested_at"): ("0010", None),
    ("bookings", "approved_at"): ("0010", None),
    ("bookings", "declined_at"): ("0010", None),
    ("users", "must_change_password"): ("0014", False),
    ("users", "totp_secret"): ("0014", None),
    ("users", "totp_enabled_at"): ("0014", None),
    ("users", "totp_last_step"): ("0014", None),
    ("api_tokens", "expires_at"): ("0014", NINETY_DAYS_ON),
    ("bookings", "given_name"): ("0015", FromPatient("name")),
    ("bookings", "given_phone"): ("0015", FromPatient("phone")),
    ("waitlist_entries", "given_name"): ("0015", FromPatient("name")),
    ("waitlist_entries", "given_phone"): ("0015", FromPatient("phone")),
    ("clinics", "brand_colour"): ("0020", "#2f6f5e"),
    ("audit_events", "detail_data"): ("0021", None),
}

# Columns whose type a revision changed: (that revision, the type before it). A value is
# written and read with the type its column has at the revision.
TYPE_BEFORE: dict[tuple[str, str], tuple[str, Any]] = {
    ("intakes", "medications"): ("0017", Text()),
    ("intakes", "conditions"): ("0017", JSON()),
    ("intakes", "other_conditions"): ("0017", Text()),
}


def type_at(table_name: str, name: str, revision: str) -> Any:
    """The column's type at ``revision``."""
    changed = TYPE_BEFORE.get((table_name, name))
    if changed is not None and revision < changed[0]:
        return changed[1]
    return db.metadata.tables[table_name].c[name].type


# The migration that writes the default checklists for every clinic that exists.
CHECKLIST_DEFAULTS_SINCE = "0005"


def tables_at(revision: str) -> set[str]:
    """The tables the schema has at ``revision``."""
    return {name for name, since in TABLE_SINCE.items() if since <= revision}


def column_since(table_name: str, name: str) -> str:
    """The revision that added the column."""
    added = COLUMN_SINCE.get((table_name, name))
    return TABLE_SINCE[table_name] if added is None else added[0]


def columns_at(table_name: str, revision: str) -> list[str]:
    """The columns ``table_name`` has at ``revision``, in the models' order."""
    return [
        c.name
        for c in db.metadata.tables[table_name].columns
        if column_since(table_name, c.name) <= revision
    ]


@dataclass
class Row:
    """A row written by a test, with every value it was given."""

    table: str
    key: tuple[Any, ...]
    values: dict[str, Any]
    # The revision whose migration's downgrade deletes the row (its table's, or a later one
    # for a value only that revision allows).
    since: str
    # The lowest revision the database has been at since the row was written.
    floor: str


@dataclass
class Dataset:
    """The rows a test wrote, and what the migrations run since should have left of them."""

    rows: list[Row] = field(default_factory=list)
    # Clinics that got the default checklists from 0005's upgrade.
    default_checklists_for: set[int] = field(default_factory=set)

    def add(
        self, connection: Connection, revision: str, table_name: str, since: str = "", **values: Any
    ) -> int | None:
        """Write a row with the columns ``table_name`` has at ``revision``; return its id.

        Nothing is written (and ``None`` returned) if the table, or a value the row needs
        (``since``), is newer than ``revision``.
        """
        since = max(TABLE_SINCE[table_name], since)
        if since > revision:
            return None
        key = insert_row(connection, revision, table_name, values)
        model = db.metadata.tables[table_name]
        if "id" in model.c:
            values = {"id": key[0], **values}
        self.rows.append(Row(table_name, key, values, since, revision))
        return key[0]

    def upgraded(self, from_revision: str) -> None:
        """Note that the database went up from ``from_revision`` to the head."""
        if from_revision < CHECKLIST_DEFAULTS_SINCE:
            self.default_checklists_for = {
                row.key[0] for row in self.rows if row.table == "clinics"
            }

    def downgraded(self, to_revision: str) -> None:
        """Note that the database went down to ``to_revision``."""
        for row in self.rows:
            row.floor = min(row.floor, to_revision)
        if to_revision < CHECKLIST_DEFAULTS_SINCE:
            self.default_checklists_for = set()

    def expected(self, table_name: str, revision: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The rows ``table_name`` should hold at ``revision``, by primary key.

        A value survives if its column has existed all along since the row was written;
        otherwise the column holds what its migration gives rows that existed before it.
        """
        rows = {}
        for row in self.rows:
            if row.table != table_name or row.since > row.floor:
                continue
            rows[row.key] = {
                name: row.values.get(name)
                if column_since(table_name, name) <= row.floor
                else self._filled(COLUMN_SINCE[(table_name, name)][1], row)
                for name in columns_at(table_name, revision)
            }
        return rows

    def _filled(self, value: Any, row: Row) -> Any:
        return value.of(self, row) if isinstance(value, FromPatient) else value

    def expected_default_checklists(self) -> list[tuple[Any, ...]]:
        """The default checklist items 0005 should have written, without their ids."""
        return sorted(
            (clinic_id, None, section.value, text, position)
            for clinic_id in self.default_checklists_for
            for section, texts in DEFAULTS.items()
            for position, text in enumerate(texts)
        )

    def written(self, table_name: str) -> list[Row]:
        """The rows written to ``table_name``, first first."""
        return [row for row in self.rows if row.table == table_name]


def insert_row(
    connection: Connection, revision: str, table_name: str, values: dict[str, Any]
) -> tuple[Any, ...]:
    """INSERT the values whose columns exist at ``revision``; return the row's primary key.

    The statement names only those columns; the models' column types only encode the values
    as the app writes them (timestamps on SQLite are fixed-width UTC text).
    """
    model = db.metadata.tables[table_name]
    present = set(columns_at(table_name, revision))
    unknown = set(values) - {c.name for c in model.columns}
    assert not unknown, f"{table_name} has no columns {unknown}"
    written = {name: value for name, value in values.items() if name in present}
    target = table(
        table_name, *(column(name, type_at(table_name, name, revision)) for name in written)
    )
    statement = insert(target).values(written)
    if "id" in model.c:
        new_id = connection.execute(statement.returning(column("id", Integer))).scalar_one()
        return (new_id,)
    connection.execute(statement)
    return tuple(written[c.name] for c in model.primary_key.columns)


def read_rows(
    connection: Connection, table_name: str, revision: str
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every row of ``table_name`` at ``revision``, by primary key, read as the app reads."""
    model = db.metadata.tables[table_name]
    names = columns_at(table_name, revision)
    target = table(table_name, *(column(n, type_at(table_name, n, revision)) for n in names))
    result = connection.execute(select(*(target.c[name] for name in names)))
    rows = {}
    for values in result.mappings():
        row = dict(values)
        rows[tuple(row[c.name] for c in model.primary_key.columns)] = row
    return rows


def at(text: str) -> datetime:
    """An aware UTC datetime (London keeps GMT in November, so also its wall time)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Seeded:
    """The ids of the rows the tests act on, in one batch of :func:`write_clinic`."""

    clinic: int
    follow_up: int
    mei: int
    james: int
    garden: int
    courtyard: int
    live: int  # Mei in the garden room, 24 November 10:00–11:00, blocked until 11:15
    cancelled: int  # Mei in the courtyard, 10:30–11:30 the same day, cancelled


def write_clinic(data: Dataset, connection: Connection, revision: str, batch: int) -> Seeded:
    """Write a clinic's rows, in every table ``revision`` has; ``batch`` keeps keys unique.

    Values differ from the defaults later migrations give, so a survivor can be told from a
    default: bookings past, future, cancelled and awaiting approval, busy time, accounts,
    outbox mail with attempts, checklists, the audit trail, intake answers, a course, the
    waitlist with offers and their mail, API tokens, and webhooks with deliveries.
    """

    def add(table_name: str, since: str = "", **values: Any) -> Any:
        return data.add(connection, revision, table_name, since, **values)

    b = batch
    created = at("2026-10-01 09:00")
    clinic = add(
        "clinics",
        name=f"Riverside Acupuncture {b}",
        address="2 Mill Lane, Cambridge",
        phone="+44 1223 111111",
        email=f"clinic{b}@clinic.test",
        timezone="Europe/London",
        slot_step_minutes=15,
        min_notice_minutes=12 * 60,
        horizon_days=60,
        late_cancel_hours=48,
        checklist_lead_hours=[48, 2],
        aftercare_delay_minutes=90,
        approval_threshold=3,
        brand_colour="#7a3b69",
    )
    alex, sam, jo = (
        add(
            "patients",
            name=name,
            email=f"{name.lower()}{b}@example.org",
            phone=phone,
            created_at=created,
            erased_at=erased,
        )
        for name, phone, erased in (
            ("Alex", "+44 7700 900001", None),
            ("Sam", "", None),
            ("Jo", "+44 7700 900003", at("2026-11-20 12:00")),
        )
    )
    mei, james = (
        add(
            "practitioners",
            name=name,
            email=f"{name.lower()}{b}@clinic.test",
            credentials="BSc (Hons) Acupuncture",
            licence="MBAcC",
            bio=f"{name} treats pain.",
            active=True,
            feed_token=f"feed-token-of-{name.lower()}-in-batch-{b}-" + "x" * 20,
        )
        for name in ("Mei", "James")
    )
    garden = add("rooms", name=f"Garden room {b}", active=True, kind="couch")
    courtyard = add("rooms", name=f"Courtyard room {b}", active=True, kind="chair")
    add("rooms", name=f"Old room {b}", active=False, kind="")
    initial = add(
        "treatments",
        name="Initial consultation",
        description="History and treatment",
        duration_minutes=90,
        buffer_minutes=15,
        first_visit=True,
        active=True,
        position=0,
        room_kind=None,
    )
    follow_up = add(
        "treatments",
        name="Follow-up treatment",
        description="",
        duration_minutes=60,
        buffer_minutes=15,
        first_visit=False,
        active=True,
        position=1,
        room_kind="couch",
    )
    for practitioner in (mei, james):
        for treatment in (initial, follow_up):
            add("practitioner_treatments", practitioner_id=practitioner, treatment_id=treatment)
        for weekday in range(6):
            for start, end in ((time(9), time(13)), (time(14), time(18))):
                add(
                    "working_hours",
                    practitioner_id=practitioner,
                    weekday=weekday,
                    start_time=start,
                    end_time=end,
                )
    add(
        "time_off",
        practitioner_id=james,
        start_at=at("2026-11-26 00:00"),
        end_at=at("2026-11-27 00:00"),
        reason="Training day",
    )
    admin, reception, _ = (
        add(
            "users",
            email=f"{role}{b}@clinic.test",
            password_hash=f"scrypt:{role}-hash",
            role=role,
            practitioner_id=practitioner,
            active=True,
            created_at=created,
            failed_logins=failed,
            locked_until=locked,
            session_version=3,
            must_change_password=role == "reception",
            totp_secret="gAAAA-sealed-secret" if role == "admin" else None,
            totp_enabled_at=at("2026-11-21 09:00") if role == "admin" else None,
            totp_last_step=59_000_000 if role == "admin" else None,
        )
        for role, practitioner, failed, locked in (
            ("admin", None, 0, None),
            ("reception", None, 4, at("2026-11-23 09:00")),
            ("practitioner", mei, 1, None),
        )
    )
    course = add(
        "courses",
        patient_id=alex,
        treatment_id=follow_up,
        session_count=4,
        every_weeks=2,
        created_at=at("2026-11-10 12:00"),
    )

    def booking(
        practitioner: int,
        room: int,
        patient: int,
        start: str,
        minutes: int,
        status: str,
        **values: Any,
    ) -> int:
        begins = at(start)
        number = len(data.written("bookings")) + 1
        row = {
            "treatment_id": follow_up,
            "practitioner_id": practitioner,
            "room_id": room,
            "patient_id": patient,
            "start_at": begins,
            "end_at": begins + timedelta(minutes=minutes),
            "blocked_until": begins + timedelta(minutes=minutes + 15),
            "status": status,
            "manage_token": f"manage-{b}-{number}",
            "notes": f"Note {number}",
            "calendar_uid": f"booking-{b}-{number}@clinic.test",
            "sequence": 1,
            "cancelled_at": None,
            "cancellation_reason": "",
            "late_cancellation": False,
            "created_at": created,
            "updated_at": at("2026-11-02 09:00"),
            "staff_notes": f"Staff note {number}",
            "course_id": None,
            "approval_requested_at": None,
            "approved_at": None,
            "declined_at": None,
            "given_name": f"As typed {number}",
            "given_phone": "",
        }
        return add("bookings", **(row | values))

    booking(mei, garden, alex, "2026-11-16 10:00", 60, "completed", course_id=course)
    booking(james, courtyard, sam, "2026-11-17 10:00", 60, "no_show")
    booking(james, garden, jo, "2026-11-23 07:30", 60, "arrived")
    live = booking(
        mei,
        garden,
        alex,
        "2026-11-24 10:00",
        60,
        "confirmed",
        course_id=course,
        approval_requested_at=created,
        approved_at=at("2026-10-02 09:00"),
    )
    cancelled = booking(
        mei,
        courtyard,
        sam,
        "2026-11-24 10:30",
        60,
        "cancelled",
        cancelled_at=at("2026-11-22 18:00"),
        cancellation_reason="Unwell",
        late_cancellation=True,
        sequence=2,
    )
    waiting = booking(
        james,
        courtyard,
        jo,
        "2026-11-24 14:00",
        90,
        "confirmed",
        treatment_id=initial,
        approval_requested_at=at("2026-11-22 08:00"),
    )
    declined = booking(
        james,
        courtyard,
        sam,
        "2026-11-25 09:00",
        60,
        "cancelled",
        approval_requested_at=at("2026-11-21 09:00"),
        declined_at=at("2026-11-22 09:00"),
        cancelled_at=at("2026-11-22 09:00"),
    )

    subscription = add(
        "calendar_subscriptions",
        practitioner_id=mei,
        name="Personal",
        url=f"https://calendar.example/mei-{b}.ics",
        etag='"abc"',
        last_modified="Sat, 21 Nov 2026 10:00:00 GMT",
        last_synced_at=at("2026-11-23 07:00"),
        last_error="",
        last_error_at=None,
        created_at=created,
    )
    event = add(
        "external_events",
        practitioner_id=mei,
        subscription_id=subscription,
        uid=f"dentist-{b}@calendar.example",
        summary="Dentist",
        sequence=2,
        dtstamp=at("2026-11-20 10:00"),
        cancelled=False,
        created_at=created,
        updated_at=at("2026-11-20 10:00"),
    )
    add(
        "busy_times",
        event_id=event,
        practitioner_id=mei,
        occurrence=at("2026-11-25 15:00"),
        start_at=at("2026-11-25 15:00"),
        end_at=at("2026-11-25 16:00"),
        summary="Dentist",
        all_day=False,
        sequence=2,
        dtstamp=at("2026-11-20 10:00"),
        cancelled=False,
    )

    add(
        "checklist_items",
        clinic_id=clinic,
        treatment_id=initial,
        section="first_visit",
        text="Bring your GP's letter.",
        position=0,
    )
    add(
        "checklist_items",
        clinic_id=clinic,
        treatment_id=None,
        section="aftercare",
        text="Drink water.",
        position=3,
    )

    entry = add(
        "waitlist_entries",
        patient_id=sam,
        treatment_id=follow_up,
        practitioner_id=mei,
        status="waiting",
        token=f"entry-{b}-1",
        given_name="Sam as typed",
        given_phone="+44 7700 900555",
        created_at=created,
        closed_at=None,
    )
    booked_entry = add(
        "waitlist_entries",
        patient_id=jo,
        treatment_id=initial,
        practitioner_id=None,
        status="booked",
        token=f"entry-{b}-2",
        given_name="Jo",
        given_phone="",
        created_at=created,
        closed_at=at("2026-11-22 08:00"),
    )
    for day in (date(2026, 11, 25), date(2026, 11, 26)):
        add("waitlist_days", entry_id=entry, day=day)
    offer = add(
        "waitlist_offers",
        entry_id=entry,
        practitioner_id=mei,
        start_at=at("2026-11-25 11:00"),
        end_at=at("2026-11-25 12:00"),
        status="offered",
        token=f"offer-{b}-1",
        offered_at=at("2026-11-23 07:00"),
        expires_at=at("2026-11-23 19:00"),
        booking_id=None,
        created_at=at("2026-11-23 07:00"),
        closed_at=None,
    )
    add(
        "waitlist_offers",
        entry_id=booked_entry,
        practitioner_id=james,
        start_at=at("2026-11-24 14:00"),
        end_at=at("2026-11-24 15:30"),
        status="taken",
        token=f"offer-{b}-2",
        offered_at=at("2026-11-22 07:00"),
        expires_at=at("2026-11-22 19:00"),
        booking_id=waiting,
        created_at=at("2026-11-22 07:00"),
        closed_at=at("2026-11-22 08:00"),
    )

    def notification(since: str = "", **values: Any) -> Any:
        row = {
            "booking_id": live,
            "waitlist_offer_id": None,
            "user_id": None,
            "variant": 0,
            "status": "pending",
            "due_at": at("2026-11-22 10:00"),
            "next_attempt_at": at("2026-11-22 10:00"),
            "attempt_count": 0,
            "sent_count": 0,
            "claimed_by": None,
            "claimed_until": None,
            "sent_at": None,
            "recipient": f"alex{b}@example.org",
            "last_error": "",
            "created_at": created,
        }
        return add("notifications", since, **(row | values))

    sent = notification(
        kind="confirmation",
        status="sent",
        attempt_count=1,
        sent_count=1,
        sent_at=at("2026-11-22 10:01"),
    )
    notification(
        kind="checklist",
        variant=48,
        due_at=at("2026-11-22 10:00"),
        claimed_by="dispatcher-1",
        claimed_until=at("2026-11-23 08:05"),
        status="sending",
    )
    failed = notification(
        booking_id=cancelled,
        kind="cancellation",
        status="failed",
        attempt_count=5,
        last_error="550 mailbox unavailable",
        recipient=f"sam{b}@example.org",
    )
    offer_mail = notification(
        since="0009",
        booking_id=None,
        waitlist_offer_id=offer,
        kind="waitlist_offer",
        status="sent",
        attempt_count=1,
        sent_count=1,
        sent_at=at("2026-11-23 07:01"),
        recipient=f"sam{b}@example.org",
    )
    notice = notification(
        since="0016",
        booking_id=None,
        user_id=admin,
        kind="account",
        variant=3,
        status="sent",
        attempt_count=1,
        sent_count=1,
        sent_at=at("2026-11-23 07:02"),
        recipient=f"admin{b}@clinic.test",
    )
    for mail, outcome, since in (
        (sent, "sent", ""),
        (failed, "failed", ""),
        (offer_mail, "sent", "0009"),
        (notice, "sent", "0016"),
    ):
        add(
            "delivery_attempts",
            since,
            notification_id=mail,
            at=at("2026-11-22 10:01"),
            outcome=outcome,
            detail="250 OK" if outcome == "sent" else "550",
            dispatcher="dispatcher-1",
        )

    def audit(action: str, since: str = "", **values: Any) -> None:
        row = {
            "at": at("2026-11-22 09:00"),
            "action": action,
            "actor": "patient",
            "user_id": None,
            "booking_id": None,
            "patient_id": None,
            "detail": action,
        }
        add("audit_events", since, **(row | values))

    audit("booked", booking_id=live, patient_id=alex)
    audit(
        "cancelled",
        actor=f"reception{b}@clinic.test",
        user_id=reception,
        booking_id=cancelled,
        patient_id=sam,
    )
    audit("patient_erased", actor=f"admin{b}@clinic.test", user_id=admin, patient_id=jo)
    audit("intake_updated", "0007", patient_id=alex)
    audit("room_changed", "0010", actor=f"admin{b}@clinic.test", user_id=admin, booking_id=live)
    audit("approved", "0010", actor=f"admin{b}@clinic.test", user_id=admin, booking_id=live)
    audit("declined", "0010", actor=f"admin{b}@clinic.test", user_id=admin, booking_id=declined)
    audit(
        "record_viewed",
        "0013",
        actor=f"admin{b}@clinic.test",
        user_id=admin,
        patient_id=alex,
        detail="patient page",
    )

    add(
        "intakes",
        patient_id=alex,
        medications="Ibuprofen",
        conditions=["diabetes"],
        other_conditions="Migraines",
        consent_at=at("2026-11-10 12:00"),
        updated_at=at("2026-11-12 12:00"),
    )

    for name, hint, revoked in (
        ("Laptop", "sk_ab…", None),
        ("Old script", "sk_cd…", at("2026-11-20 09:00")),
    ):
        add(
            "api_tokens",
            user_id=admin,
            name=name,
            token_hash=f"{b}{hint[3:5]}".ljust(64, "0"),
            hint=hint,
            created_at=created,
            last_used_at=at("2026-11-22 12:00"),
            revoked_at=revoked,
            expires_at=at("2027-02-20 09:00"),
        )
    add(
        "staff_sessions",
        user_id=admin,
        key_hash=f"{b}session".ljust(64, "s"),
        version=3,
        created_at=at("2026-11-23 07:00"),
        ended_at=None,
        address="203.0.113.9",
        user_agent="Firefox",
    )
    add(
        "security_keys",
        user_id=admin,
        credential_id=f"{b}-credential",
        public_key=bytes(range(77)),
        sign_count=12,
        transports="usb,nfc",
        name="Blue key",
        created_at=at("2026-11-21 09:30"),
        last_used_at=None,
    )
    for n in range(2):
        add(
            "recovery_codes",
            user_id=admin,
            code_hash=f"{b}{n}".ljust(64, "c"),
            created_at=at("2026-11-21 09:00"),
            used_at=at("2026-11-22 09:00") if n else None,
        )

    webhook = add(
        "webhooks",
        url=f"https://hooks.example/{b}",
        secret=f"whsec_{b}",
        previous_secret="whsec_old",
        previous_secret_until=at("2026-11-24 00:00"),
        active=True,
        created_at=created,
    )
    for event_name in ("booking.created", "booking.cancelled"):
        add("webhook_subscriptions", webhook_id=webhook, event=event_name)
    delivery = add(
        "webhook_deliveries",
        webhook_id=webhook,
        booking_id=live,
        event="booking.created",
        event_id=f"00000000-0000-4000-8000-00000000000{b}",
        payload='{"id": 1}',
        status="delivered",
        attempts=2,
        next_attempt_at=at("2026-11-22 09:05"),
        claimed_by=None,
        claimed_until=None,
        delivered_at=at("2026-11-22 09:05"),
        last_status_code=200,
        last_response="ok",
        last_error="",
        created_at=created,
    )
    for result, code in (("retrying", 503), ("delivered", 200)):
        add(
            "webhook_attempts",
            delivery_id=delivery,
            at=at("2026-11-22 09:05"),
            result=result,
            status_code=code,
            response="",
            detail=str(code),
            duration_ms=120,
            dispatcher="dispatcher-1",
        )

    return Seeded(
        clinic=clinic,
        follow_up=follow_up,
        mei=mei,
        james=james,
        garden=garden,
        courtyard=courtyard,
        live=live,
        cancelled=cancelled,
    )
