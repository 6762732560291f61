"""headcount.replica."""
