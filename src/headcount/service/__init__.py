"""headcount.service."""
