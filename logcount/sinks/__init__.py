"""The sinks: where a Delta is kept (Redis: live, keys, spool, connection, embedded; SQL: store)."""
