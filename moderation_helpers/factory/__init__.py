"""The local Classifier Factory: a loopback server speaking the Mistral API's fine-tuning,
models and classification routes, training all-MiniLM-L6-v2 on this machine.

Start it with ``python -m moderation_helpers.factory serve --store DIR`` (or the
``moderation-factory`` console script), stop it with ``... stop --store DIR``; from Python use
:func:`moderation_helpers.factory.process.start_factory` / ``stop_factory``. Clients talk to it
only through the ``mistralai`` SDK, exactly as to the Mistral API (see ``backends.connect``).

Nothing heavy is imported here, so that starting the server and its CLI stays quick.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_ENV = "MODERATION_FACTORY_TOKEN"
STORE_ENV = "MODERATION_FACTORY_STORE"
