"""The accounts that sign in, with bob's."""
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    users = op.create_table(
        "users",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("password_sha256", sa.Text, nullable=False),
    )
    op.bulk_insert(users, [{"name": "bob", "password_sha256": hashlib.sha256(b"hunter22").hexdigest()}])
    # A data migration takes a while on a real table; this one's backfill a second.
    op.execute("SELECT pg_sleep(1)")


def downgrade():
    op.drop_table("users")
