"""record views

The audit trail learns a new action, ``record_viewed``: who was shown a patient's record or
health answers, where, and when. Only the check constraint that lists the actions changes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22 10:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# The audit trail's actions as 0010 left them.
ACTIONS = [
    "booked", "rescheduled", "cancelled", "status_changed", "notes_changed", "imported",
    "patient_updated", "patient_exported", "patient_erased", "intake_updated",
    "room_changed", "approved", "declined",
]
NEW_ACTIONS = ["record_viewed"]


def _allow_actions(actions):
    """Replace the check constraint that lists the audit trail's actions (audit_events has no
    triggers, so rebuilding it on SQLite loses nothing)."""
    allowed = ", ".join(f"'{action}'" for action in actions)
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_events_audit_action"), type_="check")
        batch_op.create_check_constraint("audit_action", f"action IN ({allowed})")


def upgrade():
    _allow_actions(ACTIONS + NEW_ACTIONS)


def downgrade():
    allowed = ", ".join(f"'{action}'" for action in NEW_ACTIONS)
    op.execute(f"DELETE FROM audit_events WHERE action IN ({allowed})")
    _allow_actions(ACTIONS)
