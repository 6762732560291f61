"""headcount.cli."""
