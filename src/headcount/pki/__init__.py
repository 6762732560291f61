"""headcount.pki."""
