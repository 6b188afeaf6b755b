"""The factory's store: SQLite metadata for files, jobs and models, and their folders on disk."""
