"""The local Classifier Factory: a loopback server speaking the Mistral API's fine-tuning,
models and classification routes, training a real encoder on this machine.

Start it with ``moderation-factory serve --store DIR``, stop it with ``moderation-factory stop
--store DIR``; from Python use :func:`moderation_helpers.factory.process.start_factory` /
``stop_factory``. Clients talk to it only through the ``mistralai`` SDK, exactly as to the
Mistral API. Parts: ``api/`` (HTTP), ``store/`` (SQLite and folders), ``queue/`` (validation
and training processes), ``serving/`` (batcher, runtime, scoring).
"""
