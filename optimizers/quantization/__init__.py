"""Quantization on ONNX Runtime's quantizer (quantizer.py: INT8 static/dynamic, FP16, INT4 weights, with its
config, preparation, protected nodes and static engine), mixed and measured precision, and QAT (torchao PT2E)."""
