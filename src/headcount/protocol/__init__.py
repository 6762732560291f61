"""headcount.protocol."""
