"""waitlist

The waitlist: who waits for which treatment, practitioner and days, and the offers mailed when a time frees up.

A notification is now about a booking or a waitlist offer (exactly one), and has two new kinds.
Only the notifications table is rebuilt on SQLite; bookings is not touched (a copy of it would
lose its overlap triggers).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


KINDS = ["confirmation", "checklist", "update", "cancellation", "aftercare"]
WAITLIST_KINDS = ["waitlist_offer", "waitlist_gone"]


def _allow_kinds(batch_op, kinds):
    """Replace the check constraint that lists the notification kinds."""
    allowed = ", ".join(f"'{kind}'" for kind in kinds)
    batch_op.drop_constraint(op.f("ck_notifications_notification_kind"), type_="check")
    batch_op.create_check_constraint("notification_kind", f"kind IN ({allowed})")


def upgrade():
    op.create_table('waitlist_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('treatment_id', sa.Integer(), nullable=False),
    sa.Column('practitioner_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('waiting', 'booked', 'left', name='waitlist_entry_status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_waitlist_entries_patient_id_patients')),
    sa.ForeignKeyConstraint(['practitioner_id'], ['practitioners.id'], name=op.f('fk_waitlist_entries_practitioner_id_practitioners')),
    sa.ForeignKeyConstraint(['treatment_id'], ['treatments.id'], name=op.f('fk_waitlist_entries_treatment_id_treatments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_entries')),
    sa.UniqueConstraint('token', name=op.f('uq_waitlist_entries_token'))
    )
    op.create_index(op.f('ix_waitlist_entries_patient_id'), 'waitlist_entries', ['patient_id'], unique=False)

    op.create_table('waitlist_days',
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['waitlist_entries.id'], name=op.f('fk_waitlist_days_entry_id_waitlist_entries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('entry_id', 'day', name=op.f('pk_waitlist_days'))
    )
    op.create_index(op.f('ix_waitlist_days_day'), 'waitlist_days', ['day'], unique=False)

    op.create_table('waitlist_offers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('practitioner_id', sa.Integer(), nullable=False),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('offered', 'taken', 'gone', 'withdrawn', name='waitlist_offer_status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('booking_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('end_at > start_at', name=op.f('ck_waitlist_offers_ends_after_start')),
    sa.CheckConstraint('expires_at > offered_at', name=op.f('ck_waitlist_offers_expires_after_offered')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_waitlist_offers_booking_id_bookings')),
    sa.ForeignKeyConstraint(['entry_id'], ['waitlist_entries.id'], name=op.f('fk_waitlist_offers_entry_id_waitlist_entries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['practitioner_id'], ['practitioners.id'], name=op.f('fk_waitlist_offers_practitioner_id_practitioners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_offers')),
    sa.UniqueConstraint('entry_id', 'practitioner_id', 'start_at', name=op.f('uq_waitlist_offers_entry_id')),
    sa.UniqueConstraint('token', name=op.f('uq_waitlist_offers_token'))
    )
    op.create_index('ix_waitlist_offers_practitioner_start', 'waitlist_offers', ['practitioner_id', 'start_at'], unique=False)

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.alter_column('booking_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('waitlist_offer_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_notifications_waitlist_offer_id_waitlist_offers'), 'waitlist_offers', ['waitlist_offer_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_notifications_waitlist_offer_id'), ['waitlist_offer_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_notifications_waitlist_offer_id'), ['waitlist_offer_id', 'kind'])
        batch_op.create_check_constraint('one_subject', '(booking_id IS NULL) <> (waitlist_offer_id IS NULL)')
        _allow_kinds(batch_op, KINDS + WAITLIST_KINDS)


def downgrade():
    # Foreign keys are off while SQLite migrates, so the attempts go first, by hand.
    offer_mail = "SELECT id FROM notifications WHERE waitlist_offer_id IS NOT NULL"
    op.execute(f"DELETE FROM delivery_attempts WHERE notification_id IN ({offer_mail})")
    op.execute("DELETE FROM notifications WHERE waitlist_offer_id IS NOT NULL")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        _allow_kinds(batch_op, KINDS)
        batch_op.drop_constraint(op.f('ck_notifications_one_subject'), type_='check')
        batch_op.drop_constraint(batch_op.f('uq_notifications_waitlist_offer_id'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_notifications_waitlist_offer_id'))
        batch_op.drop_constraint(batch_op.f('fk_notifications_waitlist_offer_id_waitlist_offers'), type_='foreignkey')
        batch_op.drop_column('waitlist_offer_id')
        batch_op.alter_column('booking_id', existing_type=sa.Integer(), nullable=False)

    op.drop_index('ix_waitlist_offers_practitioner_start', table_name='waitlist_offers')
    op.drop_table('waitlist_offers')
    op.drop_index(op.f('ix_waitlist_days_day'), table_name='waitlist_days')
    op.drop_table('waitlist_days')
    op.drop_index(op.f('ix_waitlist_entries_patient_id'), table_name='waitlist_entries')
    op.drop_table('waitlist_entries')
