"""How a classifier turns a text's token vectors into the one vector its heads read.

The trainer builds the network from one of these names, its checkpoint and the exported
folder's ``classifier.json`` record it, and the folder's reader checks it; the pooling itself
lives inside the saved weights and the ONNX graph, so no scorer computes it.

- ``mean``: the mean of the text's token vectors (padding left out), the pooling the
  sentence-transformers encoders were trained with.
- ``mean_max``: that mean beside the per-dimension maximum over the text's tokens (twice as
  wide): one strong phrase in a long text is not averaged away.
"""

from __future__ import annotations

POOLINGS = ("mean", "mean_max")
