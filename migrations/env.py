"""Alembic environment: runs on the connection crmkit hands over (see crmkit.runtime.storage.migrate)."""
from alembic import context

from crmkit.runtime.storage.platform_tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through `crmkit init` (it passes the configured database connection).")

context.configure(connection=connection, target_metadata=metadata, version_table="crmkit_alembic_version",
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
