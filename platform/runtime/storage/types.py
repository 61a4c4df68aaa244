"""Column types shared by platform and entity tables."""
from sqlalchemy import JSON
from sqlalchemy.dialects.postgresql import JSONB

from ..fields.temporal import UTCDateTime


def json_type():
    return JSON().with_variant(JSONB(), "postgresql")


__all__ = ["UTCDateTime", "json_type"]
