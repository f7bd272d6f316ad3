"""courses

A course of treatment: sessions booked together every few weeks; each booking may belong to one.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 09:00:00.000000

"""
import importlib.util
from pathlib import Path

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _initial_schema():
    """The first migration, whose overlap guards a copied bookings table has to get back."""
    path = Path(__file__).with_name("0001_initial_schema.py")
    spec = importlib.util.spec_from_file_location("initial_schema_0001", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade():
    op.create_table('courses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('treatment_id', sa.Integer(), nullable=False),
    sa.Column('session_count', sa.Integer(), nullable=False),
    sa.Column('every_weeks', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('session_count >= 2', name=op.f('ck_courses_at_least_two_sessions')),
    sa.CheckConstraint('every_weeks >= 1', name=op.f('ck_courses_every_weeks_positive')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_courses_patient_id_patients')),
    sa.ForeignKeyConstraint(['treatment_id'], ['treatments.id'], name=op.f('fk_courses_treatment_id_treatments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_courses'))
    )
    with op.batch_alter_table('courses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_courses_patient_id'), ['patient_id'], unique=False)

    if op.get_bind().dialect.name == "sqlite":
        # In place, as SQLite allows for a nullable column: a batch copy of the table would
        # lose its overlap triggers.
        op.execute("ALTER TABLE bookings ADD COLUMN course_id INTEGER REFERENCES courses (id)")
    else:
        op.add_column('bookings', sa.Column('course_id', sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f('fk_bookings_course_id_courses'), 'bookings', 'courses', ['course_id'], ['id']
        )
    op.create_index(op.f('ix_bookings_course_id'), 'bookings', ['course_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_bookings_course_id'), table_name='bookings')
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot drop a column with a foreign key in place; the batch copy of the table
        # loses the overlap triggers, so they are made again.
        initial = _initial_schema()
        initial.drop_overlap_guards()
        with op.batch_alter_table('bookings', schema=None) as batch_op:
            batch_op.drop_column('course_id')
        initial.create_overlap_guards()
    else:
        op.drop_column('bookings', 'course_id')

    with op.batch_alter_table('courses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_courses_patient_id'))

    op.drop_table('courses')
