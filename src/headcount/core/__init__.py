"""headcount.core."""
