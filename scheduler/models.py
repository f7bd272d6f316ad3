"""Every model, imported in one place for the metadata and Alembic."""

from scheduler.audit import AuditEvent
from scheduler.booking.models import Booking, BookingStatus
from scheduler.calendars.models import BusyTime, CalendarSubscription, ExternalEvent
from scheduler.clinic.models import (
    ChecklistItem,
    ChecklistSection,
    Clinic,
    Practitioner,
    Room,
    TimeOff,
    Treatment,
    WorkingHours,
    practitioner_treatments,
)
from scheduler.notifications.models import DeliveryAttempt, Notification
from scheduler.patients.models import Intake, Patient
from scheduler.staff.models import ApiToken, Role, User
from scheduler.waitlist.models import WaitlistDay, WaitlistEntry, WaitlistOffer
from scheduler.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery, WebhookSubscription

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Booking",
    "BookingStatus",
    "BusyTime",
    "CalendarSubscription",
    "ChecklistItem",
    "ChecklistSection",
    "Clinic",
    "DeliveryAttempt",
    "ExternalEvent",
    "Intake",
    "Notification",
    "Patient",
    "Practitioner",
    "Role",
    "Room",
    "TimeOff",
    "Treatment",
    "User",
    "WaitlistDay",
    "WaitlistEntry",
    "WaitlistOffer",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
    "WorkingHours",
    "practitioner_treatments",
]
