"""The log janitor: removes stream logs older than LUNA_STREAMS_LOGS_CLEAR_INTERVAL,
keeping each stream's newest row (dramatiq + a lease-guarded schedule)."""
