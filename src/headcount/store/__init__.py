"""headcount.store."""
