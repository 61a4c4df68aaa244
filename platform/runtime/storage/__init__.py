"""Storage: the platform's own tables, entity tables, and schema plans."""
