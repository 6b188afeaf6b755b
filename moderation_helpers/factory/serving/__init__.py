"""The factory's serving path: limits -> batcher -> runtime -> scores, and the model cache."""
