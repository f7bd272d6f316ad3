"""practitioners get a secret token for their calendar feed's address

Revision ID: 0002
Revises: 0001
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("practitioners") as batch_op:
        batch_op.add_column(sa.Column("feed_token", sa.String(length=64), nullable=True))
    practitioners = sa.table("practitioners", sa.column("id", sa.Integer), sa.column("feed_token"))
    connection = op.get_bind()
    for (practitioner_id,) in connection.execute(sa.select(practitioners.c.id)).all():
        connection.execute(
            practitioners.update()
            .where(practitioners.c.id == practitioner_id)
            .values(feed_token=secrets.token_urlsafe(32))
        )
    with op.batch_alter_table("practitioners") as batch_op:
        batch_op.alter_column("feed_token", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_practitioners_feed_token"), ["feed_token"])


def downgrade():
    with op.batch_alter_table("practitioners") as batch_op:
        batch_op.drop_constraint(op.f("uq_practitioners_feed_token"), type_="unique")
        batch_op.drop_column("feed_token")
