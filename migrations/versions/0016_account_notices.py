"""account notices

A notification can now be a notice to a staff member that their password, two-step login or
role changed: it names the account (``user_id``) instead of a booking or a waitlist offer
(exactly one of the three), with the new kind ``account``. Only the notifications table is
rebuilt on SQLite.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 12:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


KINDS = [
    "confirmation", "checklist", "update", "cancellation", "aftercare",
    "waitlist_offer", "waitlist_gone",
]
ONE_OF_TWO = "(booking_id IS NULL) <> (waitlist_offer_id IS NULL)"
ONE_OF_THREE = (
    "(CASE WHEN booking_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN waitlist_offer_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN user_id IS NULL THEN 0 ELSE 1 END) = 1"
)


def _allow(batch_op, kinds, one_subject):
    """Replace the check constraints that list the kinds and say what a message is about."""
    allowed = ", ".join(f"'{kind}'" for kind in kinds)
    batch_op.drop_constraint(op.f("ck_notifications_notification_kind"), type_="check")
    batch_op.create_check_constraint("notification_kind", f"kind IN ({allowed})")
    batch_op.drop_constraint(op.f("ck_notifications_one_subject"), type_="check")
    batch_op.create_check_constraint("one_subject", one_subject)


def upgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_notifications_user_id_users'), 'users', ['user_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_notifications_user_id'), ['user_id'], unique=False)
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        _allow(batch_op, KINDS + ["account"], ONE_OF_THREE)


def downgrade():
    # Foreign keys are off while SQLite migrates, so the attempts go first, by hand.
    notices = "SELECT id FROM notifications WHERE user_id IS NOT NULL"
    op.execute(f"DELETE FROM delivery_attempts WHERE notification_id IN ({notices})")
    op.execute("DELETE FROM notifications WHERE user_id IS NOT NULL")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        _allow(batch_op, KINDS, ONE_OF_TWO)
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_user_id'))
        batch_op.drop_constraint(batch_op.f('fk_notifications_user_id_users'), type_='foreignkey')
        batch_op.drop_column('user_id')
