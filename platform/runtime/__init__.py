"""crmkit.runtime: metadata → tables, records, queries, policy, web UI and API."""
