"""Techniques on PyTorch models: training loops, example inputs, export helpers, pruning (Torch-Pruning),
knowledge distillation and low-rank factorization."""
