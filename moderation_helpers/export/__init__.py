"""Export: a trained classifier (handed in) becomes a model folder (ONNX, int8, model card)."""
