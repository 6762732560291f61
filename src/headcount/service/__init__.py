"""Long-running processes around a replica: the gate daemon (``headcount run``),
its control socket, scheduled jobs (backups, archiving, compaction) and the
run journal, and the TOML configuration readers they share.
"""
