"""details as given

Bookings and waitlist places keep the name and phone number typed when they were made, which
their own pages and API answers show instead of the patient's record: whoever books with an
address already on file no longer sees the name and number kept for it. Rows made before
this revision take the patient's name and phone as they are now.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

TABLES = ('bookings', 'waitlist_entries')


def upgrade():
    for table in TABLES:
        # Plain ADD COLUMNs (no table rebuild on SQLite: bookings has triggers and foreign
        # keys pointing at it).
        op.add_column(table, sa.Column('given_name', sa.String(length=200), nullable=False, server_default=''))
        op.add_column(table, sa.Column('given_phone', sa.String(length=50), nullable=False, server_default=''))
        op.execute(
            f"UPDATE {table} SET "
            f"given_name = (SELECT name FROM patients WHERE patients.id = {table}.patient_id), "
            f"given_phone = (SELECT phone FROM patients WHERE patients.id = {table}.patient_id)"
        )


def downgrade():
    for table in TABLES:
        op.drop_column(table, 'given_phone')
        op.drop_column(table, 'given_name')
