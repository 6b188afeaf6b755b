"""Export: a trained classifier (handed in) becomes a model folder (ONNX graph, int8, model card)."""
