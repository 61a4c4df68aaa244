"""The REST API generated from metadata (/api/v1)."""
