"""The factory's HTTP API: the app, one router per resource, schemas, responses and limits."""
