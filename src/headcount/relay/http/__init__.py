"""headcount.relay.http."""
