"""The exported model folder: its format, the torch-free Moderator that serves it, and the
decisions it makes. Uses only ``core``: onnxruntime, tokenizers and numpy at run time."""
