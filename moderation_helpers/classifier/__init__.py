"""The torch classifier the factory fine-tunes: network, batches, training loop, checkpoint,
duration estimate.

The names below are the *trainer interface* the factory's worker loads (``$MODERATION_FACTORY_
TRAINER`` names another module with the same names, e.g. a test's stand-in).
"""

from moderation_helpers.classifier.estimate import estimate_training_seconds
from moderation_helpers.classifier.network import Target, clamp_seq_len, count_tokens
from moderation_helpers.classifier.training import TrainingCancelled, TrainSettings, train

__all__ = [
    "Target",
    "TrainSettings",
    "TrainingCancelled",
    "clamp_seq_len",
    "count_tokens",
    "estimate_training_seconds",
    "train",
]
