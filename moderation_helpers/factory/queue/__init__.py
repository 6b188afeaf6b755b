"""The factory's job queue: validation, scheduling, and the training process."""
