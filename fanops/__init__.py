"""The shared data model: event schema, Redis keys, settings, errors, and the read/write
functions every side goes through."""
