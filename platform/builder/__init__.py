"""crmkit.builder: the browser builder (drafts, publish, migration preview). Grows in the builder issue."""
