"""One FastAPI router per resource, named by its path: ``files`` (/v1/files), ``jobs``
(/v1/fine_tuning/jobs), ``models`` (/v1/models), ``classifications`` (/v1/classifications).
``app.py`` assembles them with the token check; each reads the shared state (store, scheduler,
loaded models) through the dependencies in :mod:`.deps`."""
