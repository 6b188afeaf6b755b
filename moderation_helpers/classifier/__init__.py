"""The torch classifier the factory fine-tunes: network, batches, training loop, checkpoint."""
