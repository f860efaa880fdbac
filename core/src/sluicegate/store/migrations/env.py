"""Alembic environment: migrations run on the connection the store hands over.

The store calls Alembic in-process (see ``sluicegate.store.db.migrate``) inside its own
transaction and lock, so two processes starting at once never migrate twice.
"""

from __future__ import annotations

from alembic import context

from sluicegate.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
