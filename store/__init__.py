"""The log: event types, the payload codec, the store protocol and its two stores:
SQLite (the embedded default) and PostgreSQL (workers on many machines)."""
