"""ONNX models as PyTorch modules (onnx2torch), made prunable by exact rewrites, recovered by label-free distillation."""
