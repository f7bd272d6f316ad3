"""waitlist

The waitlist: who waits for which treatment, practitioner and days, and the offers mailed when a time frees up.

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


def upgrade():
    pass


def downgrade():
    pass
