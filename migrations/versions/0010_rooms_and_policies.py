"""rooms and policies

Room kinds a treatment can require, and the clinic's approval policy for patients with late cancellations or no-shows.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


# The audit trail's actions as 0007 left them.
ACTIONS = [
    "booked", "rescheduled", "cancelled", "status_changed", "notes_changed", "imported",
    "patient_updated", "patient_exported", "patient_erased", "intake_updated",
]
NEW_ACTIONS = ["room_changed", "approved", "declined"]


def _allow_actions(actions):
    """Replace the check constraint that lists the audit trail's actions."""
    allowed = ", ".join(f"'{action}'" for action in actions)
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_events_audit_action"), type_="check")
        batch_op.create_check_constraint("audit_action", f"action IN ({allowed})")


def upgrade():
    with op.batch_alter_table('clinics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approval_threshold', sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            'approval_threshold_range',
            'approval_threshold IS NULL OR approval_threshold BETWEEN 1 AND 100',
        )

    # The empty default stays, for the rooms that exist: ordinary rooms of no particular kind.
    with op.batch_alter_table('rooms', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('kind', sa.String(length=60), nullable=False, server_default='')
        )

    with op.batch_alter_table('treatments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('room_kind', sa.String(length=60), nullable=True))

    # Not in batch mode: on SQLite that would copy the table and lose its overlap triggers.
    op.add_column('bookings', sa.Column('approval_requested_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('bookings', sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('bookings', sa.Column('declined_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f('ix_bookings_approval_requested_at'), 'bookings', ['approval_requested_at'], unique=False
    )

    _allow_actions(ACTIONS + NEW_ACTIONS)


def downgrade():
    allowed = ", ".join(f"'{action}'" for action in NEW_ACTIONS)
    op.execute(f"DELETE FROM audit_events WHERE action IN ({allowed})")
    _allow_actions(ACTIONS)

    op.drop_index(op.f('ix_bookings_approval_requested_at'), table_name='bookings')
    # In place on SQLite too (3.35+ drops a column that no index, key or trigger uses), so the
    # overlap triggers stay.
    op.drop_column('bookings', 'declined_at')
    op.drop_column('bookings', 'approved_at')
    op.drop_column('bookings', 'approval_requested_at')

    with op.batch_alter_table('treatments', schema=None) as batch_op:
        batch_op.drop_column('room_kind')

    with op.batch_alter_table('rooms', schema=None) as batch_op:
        batch_op.drop_column('kind')

    with op.batch_alter_table('clinics', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_clinics_approval_threshold_range'), type_='check')
        batch_op.drop_column('approval_threshold')
