"""The log: event types, the payload codec, the store protocol and the SQLite store."""
