"""sealed health answers

The intake's answers (medications, conditions, other conditions) are stored sealed with a
key derived from SECRET_KEY (scheduler/sealing.py), so that a copy of the database alone
holds no health answer in clear. ``conditions`` becomes text (the sealed JSON list). The
upgrade seals what is there; the downgrade opens it again, so both need the app's
SECRET_KEY (``flask db upgrade`` runs with it).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 13:00:00.000000

"""
import json

from alembic import op
import sqlalchemy as sa
from flask import current_app

from scheduler.sealing import HEALTH, keys_of, seal, unseal


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

intakes = sa.table(
    'intakes',
    sa.column('id', sa.Integer()),
    sa.column('medications', sa.Text()),
    sa.column('conditions', sa.Text()),
    sa.column('other_conditions', sa.Text()),
)


def _rewrite(change):
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(intakes.c.id, intakes.c.medications, intakes.c.conditions, intakes.c.other_conditions)
    ).all()
    for row in rows:
        connection.execute(
            intakes.update().where(intakes.c.id == row.id).values(
                medications=change(row.medications, text=True),
                conditions=change(row.conditions, text=False),
                other_conditions=change(row.other_conditions, text=True),
            )
        )


def upgrade():
    with op.batch_alter_table('intakes', schema=None) as batch_op:
        batch_op.alter_column(
            'conditions', existing_type=sa.JSON(), type_=sa.Text(),
            postgresql_using='conditions::text',
        )
    keys = keys_of(current_app.config)

    def sealed(value, *, text):
        if value is None or (text and value == ""):
            return value
        if not text:
            value = json.dumps(json.loads(value))  # the JSON as the app writes it
        return seal(value, keys, HEALTH)

    _rewrite(sealed)


def downgrade():
    keys = keys_of(current_app.config)

    def opened(value, *, text):
        if value is None or (text and value == ""):
            return value
        return unseal(value, keys, HEALTH)

    _rewrite(opened)
    with op.batch_alter_table('intakes', schema=None) as batch_op:
        batch_op.alter_column(
            'conditions', existing_type=sa.Text(), type_=sa.JSON(),
            postgresql_using='conditions::json',
        )
