"""One FastAPI router per resource, named by its path: ``files`` (/v1/files), ``jobs``
(/v1/fine_tuning/jobs), ``fine_tuned_models`` (/v1/fine_tuning/models), ``models`` (/v1/models),
``classifications`` (/v1/classifications, /v1/chat/classifications), ``moderations``
(/v1/moderations, /v1/chat/moderations); ``chat`` reads a chat request's conversations.
``app.py`` assembles them with the token check; each reads the shared state (store, scheduler,
loaded models) through the dependencies in :mod:`.deps`."""
