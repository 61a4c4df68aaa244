"""Read-only views of Flask-AppBuilder's own tables that entity tables reference (FAB creates them)."""
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()

ab_user = Table(
    "ab_user", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64)),
    Column("first_name", String(64)),
    Column("last_name", String(64)),
)
