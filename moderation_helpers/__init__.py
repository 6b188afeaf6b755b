"""moderation-cookbook helpers: the logic behind the notebooks.

Layers (imports point down): notebooks -> helpers (data, jsonl, backends, jobs, evaluate,
plots, pipeline) -> the SDK. The local Classifier Factory (``moderation_helpers.factory``) is
reached only over HTTP through the SDK, exactly as the Mistral API is.
"""

__version__ = "0.1.0"
