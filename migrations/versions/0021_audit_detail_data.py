"""audit detail data

What each new audit entry says, kept as its message and values beside the English text, so
that the trail reads in each staff member's language. Entries written before keep their
English text only.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 19:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detail_data', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('detail_data')
