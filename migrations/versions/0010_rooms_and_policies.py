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


def upgrade():
    pass


def downgrade():
    pass
