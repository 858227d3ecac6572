"""ONNX graph work: loading and saving models (model.py), the graph index and the Rewrite ABC (index.py), fusion,
operator rewrites, FLOPs and how profile rows are named back to graph nodes."""
