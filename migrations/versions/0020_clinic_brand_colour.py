"""clinic brand colour

The clinic's colour for buttons, links and its name on the pages and in mail, as #rrggbb.
Existing clinics keep the look they had: the stylesheet's green.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 15:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clinics', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('brand_colour', sa.String(length=7), nullable=False, server_default='#2f6f5e')
        )
        batch_op.create_check_constraint(
            'brand_colour_hex', "length(brand_colour) = 7 AND substr(brand_colour, 1, 1) = '#'"
        )


def downgrade():
    with op.batch_alter_table('clinics', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_clinics_brand_colour_hex'), type_='check')
        batch_op.drop_column('brand_colour')
